"""The regulariser interface: an anti-collapse term on embeddings, chosen in the recipe.

A method hands its regulariser embeddings ``z [..., n, D]``: n rows (tokens or clips) per group,
optional leading group dimensions (the world model's per-time-step mode passes ``[T, n, D]``).
Statistics are taken over the n rows of each group, over the *global* batch under DDP/FSDP
(``jepa.objectives.collectives``), and averaged over groups. ``forward`` returns the weighted
total and the unweighted terms for logging::

    total, terms = regularizer(z, step=global_step)     # terms: {"var_loss": ..., "cov_loss": ...}

Recipes choose one by class path (``model.init_args.regularizer: {class_path:
jepa.objectives.SIGReg, init_args: {weight: 0.05}}``); checkpoints store that spec as plain data
(``spec()``), so they load with ``torch.load(weights_only=True)``. A new regulariser subclasses
``Regularizer``, implements ``terms`` and ``combine``, records its ``init_args``, and needs no
change in either method.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class Regularizer(nn.Module):
    """Base class. ``expander``: width of an MLP (Linear-LayerNorm-GELU-Linear, as in VICReg)
    between the embeddings and the statistics; 0 regularises the embeddings themselves. The
    expander trains with the model and is not part of an exported encoder."""

    def __init__(self, expander: int = 0) -> None:
        super().__init__()
        if expander < 0:
            raise ValueError(f"regularizer expander width must be >= 0, got {expander}")
        self.expander_width = int(expander)
        self.expander: nn.Module | None = None
        self.init_args: dict[str, Any] = {"expander": int(expander)}

    def setup(self, dim: int) -> None:
        """Called by the method once the embedding width ``dim`` is known (builds the expander)."""
        if self.expander_width > 0 and self.expander is None:
            e = self.expander_width
            self.expander = nn.Sequential(nn.Linear(dim, e), nn.LayerNorm(e), nn.GELU(), nn.Linear(e, e))

    def forward(self, z: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.expander is not None:
            z = self.expander(z)
        terms = self.terms(z, step)
        return self.combine(terms), terms

    def terms(self, z: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Unweighted terms of ``z [..., n, D]`` (names end in ``_loss``)."""
        raise NotImplementedError

    def combine(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted total of (possibly accumulated) terms."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}``: plain data that rebuilds this regulariser."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self.init_args)}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.init_args.items())


def build_regularizer(value: Regularizer | Mapping[str, Any] | None) -> Regularizer | None:
    """A regulariser from an instance, a ``{class_path, init_args}`` mapping (a recipe or a
    checkpoint's hyper-parameters) or None. Only ``Regularizer`` subclasses are built."""
    if value is None or isinstance(value, Regularizer):
        return value
    if not isinstance(value, Mapping) or "class_path" not in value:
        raise ValueError(f"regularizer must be a class_path/init_args mapping or None, got {value!r}")
    path = str(value["class_path"])
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"regularizer class_path {path!r} not found ({e}); "
                         "e.g. jepa.objectives.VICReg or jepa.objectives.SIGReg") from e
    if not (isinstance(cls, type) and issubclass(cls, Regularizer)):
        raise ValueError(f"regularizer class_path {path!r} is not a jepa.objectives.Regularizer")
    return cls(**dict(value.get("init_args") or {}))
