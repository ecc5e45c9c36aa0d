"""Everything that turns video files into training batches.

decoding    frame-exact PyAV decoding (optional torchcodec backend), bad-file errors
sampling    which frames make a clip
sources     manifests and folders of videos
dataset     ``VideoClipDataset`` (CPU workers) and ``collate_clips``
transforms  device-side random-resized-crop / flip / normalise and the eval transform
datamodule  ``VideoDataModule`` wiring it together for Lightning
synth       the built-in moving-shapes dataset
writers     H.264 video and train/val manifest writing (synth and trajectory collection)
check       ``jepa data check`` report
(the ``jepa bench data`` loader benchmark lives in ``jepa.benchmarks.data``)
"""

from data_pipelines.dataset import VideoClipDataset, collate_clips
from data_pipelines.decoding import DecodeError, open_video
from data_pipelines.sampling import ClipSampler
from data_pipelines.sources import VideoSource, load_source

__all__ = [
    "ClipSampler",
    "DecodeError",
    "VideoClipDataset",
    "VideoSource",
    "collate_clips",
    "load_source",
    "open_video",
]
