"""Old module paths, kept importable after the move to ``methods/``, ``objectives/``, ``training/``.

Saved run configs name classes by path (``model.class_path: jepa.pretrain.VideoJEPA``,
``jepa.checkpointing.PreemptionCheckpoint``, ``jepa.monitors.SkippedFilesMonitor``) and
``python -m jepa.cli`` appears in launch scripts. A meta-path finder maps each old name to its
new module (the same module object, so classes compare equal and pickles written with either
name load). Installed by ``import jepa``; nothing here is imported eagerly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

# old module path -> new module path
ALIASES: dict[str, str] = {
    "jepa.pretrain": "jepa.methods.vjepa",
    "jepa.world_model": "jepa.methods.world_model",
    "jepa.nonfinite": "jepa.methods.nonfinite",
    "jepa.schedules": "jepa.methods.schedules",
    "jepa.losses": "jepa.objectives",
    "jepa.ema": "jepa.objectives.targets",
    "jepa.cli": "jepa.training.cli",
    "jepa.train_cli": "jepa.training.lightning_cli",
    "jepa.checkpointing": "jepa.training.checkpointing",
    "jepa.distributed": "jepa.training.distributed",
    "jepa.preflight": "jepa.training.preflight",
    "jepa.monitors": "jepa.training.callbacks",
    "jepa.bench_train": "jepa.benchmarks.train",
    "jepa.planning.bench": "jepa.benchmarks.plan",
}


class _AliasLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(ALIASES[spec.name])

    def exec_module(self, module: ModuleType) -> None:  # the target module is already executed
        return None

    def get_code(self, fullname: str) -> object:  # ``python -m jepa.cli`` runs the new module's code
        target = ALIASES[fullname]
        spec = importlib.util.find_spec(target)
        assert spec is not None and spec.loader is not None
        return spec.loader.get_code(target)  # type: ignore[attr-defined]


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in ALIASES:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader())


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
