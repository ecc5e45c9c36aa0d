"""``jepa inspect``: sparse dictionaries over frozen features (see ``dictionary`` and ``run``)."""
