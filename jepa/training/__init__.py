"""Run plumbing around the methods: the ``jepa`` command line (``cli``), ``jepa fit`` /
``jepa validate`` on LightningCLI (``lightning_cli``), atomic checkpoints and preemption
(``checkpointing``), FSDP (``distributed``), checks before a run starts (``preflight``) and
training callbacks (``callbacks``). Nothing here is JEPA maths; ``jepa.methods`` and
``jepa.objectives`` never need it except for FSDP sharding in ``configure_model``."""
