"""Weights from other projects' files into this project's models (``jepa convert``)."""
