"""Frozen-encoder evaluation: features (cached), linear and attentive heads, baselines, reports.

    from jepa.probe import run_probe
    report = run_probe("encoder.pt", "train.csv", "val.csv", ["direction"], heads=["linear", "attentive"])
"""

from jepa.probe.features import (
    ClipSpec,
    FeatureCache,
    FeatureSet,
    PixelFeatures,
    extract_features,
    probe_dataset,
)
from jepa.probe.heads import AttentiveHead, LinearHead
from jepa.probe.run import run_probe
from jepa.probe.select import run_head
from jepa.probe.train import HeadConfig

__all__ = [
    "AttentiveHead", "ClipSpec", "FeatureCache", "FeatureSet", "HeadConfig", "LinearHead", "PixelFeatures",
    "extract_features", "probe_dataset", "run_head", "run_probe",
]
