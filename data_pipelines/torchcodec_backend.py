"""Old location, kept for compatibility: the torchcodec backend lives in
``data_pipelines.decoding.torchcodec``.

Re-exports its names (the same objects); like that module, this imports without torchcodec.
"""

from __future__ import annotations

from data_pipelines.decoding.torchcodec import TorchCodecReader, torchcodec_available

__all__ = ["TorchCodecReader", "torchcodec_available"]
