"""The offline wandb logger ``jepa fit`` adds by default, without a warning a user cannot act on.

Lightning's ``WandbLogger`` always passes ``anonymous`` to ``wandb.init``, and current wandb
warns that the setting has no effect. ``OfflineWandbLogger`` leaves it out unless it is asked for.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger


class OfflineWandbLogger(WandbLogger):
    """``WandbLogger`` (offline by default) that does not pass an unset ``anonymous`` to wandb."""

    def __init__(self, *args: Any, offline: bool = True, anonymous: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, offline=offline, anonymous=anonymous, **kwargs)
        if anonymous is None:
            self._wandb_init.pop("anonymous", None)
