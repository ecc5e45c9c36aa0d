"""Objective parts, shared by every method: prediction costs, anti-collapse regularisers,
target kinds (EMA / stop-gradient / online) and collapse monitors.

    from jepa.objectives import SIGReg, VICReg
    total, terms = VICReg(var_weight=1.0, cov_weight=0.04)(z)     # z [n, D] or [groups, n, D]

All statistics are exact over the global batch under DDP and FSDP (``collectives``).
"""

from jepa.objectives.base import Regularizer, build_regularizer
from jepa.objectives.monitors import collapse_stats, effective_rank
from jepa.objectives.prediction import LossKind, prediction_loss
from jepa.objectives.sigreg import (
    SIGReg,
    epps_pulley,
    epps_pulley_quadrature,
    random_directions,
    sigreg,
)
from jepa.objectives.targets import TargetEncoder, TargetKind, momentum_at
from jepa.objectives.vicreg import VICReg, covariance_loss, variance_loss, vicreg_terms

__all__ = [
    "LossKind", "Regularizer", "SIGReg", "TargetEncoder", "TargetKind", "VICReg", "build_regularizer",
    "collapse_stats", "covariance_loss", "effective_rank", "epps_pulley", "epps_pulley_quadrature", "momentum_at",
    "random_directions",
    "prediction_loss", "sigreg", "variance_loss", "vicreg_terms",
]
