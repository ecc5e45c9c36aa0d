"""JEPA video world models: self-supervised prediction in latent space, on Lightning.

    import jepa
    enc = jepa.load_encoder("encoder.pt")          # from `jepa export` or a `jepa fit` checkpoint
    enc = jepa.create_encoder("vit_small", patch_size=16, input_size=(16, 224, 224))
    clips = jepa.read_clips("video.mp4", enc, views=2)  # the eval transform -> [2, 3, T, H, W]
"""

from __future__ import annotations

from typing import Any

from jepa import _legacy

_legacy.install()  # old module paths (jepa.pretrain, jepa.cli, ...) keep importing

__version__ = "0.1.0"
__all__ = ["create_encoder", "encoder_meta", "export_encoder", "load_encoder", "read_clips", "save_encoder"]


def __getattr__(name: str) -> Any:  # lazy, so `import jepa` stays cheap
    if name == "read_clips":
        from jepa.clips import read_clips

        return read_clips
    if name in __all__:
        from jepa import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'jepa' has no attribute {name!r}")
