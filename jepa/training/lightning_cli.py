"""``jepa fit`` / ``jepa validate``: LightningCLI over any jepa LightningModule and DataModule.

    jepa fit --config configs/pretrain/quickstart.yaml
    jepa fit --config configs/pretrain/quickstart.yaml --trainer.max_epochs 1 --model.init_args.lr 1e-3
    jepa fit --config configs/pretrain/quickstart.yaml --print_config

A recipe names its classes (``model.class_path: jepa.methods.VideoJEPA``,
``data.class_path: data_pipelines.datamodule.VideoDataModule``) so pretraining and world
models share one entry point. Defaults when a recipe leaves them out: wandb in offline mode
(no account or network needed; ``wandb sync`` later) plus a CSV logger under
``trainer.default_root_dir``, a checkpoint callback keeping ``last.ckpt`` and the best
``val/loss``, a learning-rate monitor, and fp32 on CPU / bf16-mixed on GPU.

Fault tolerance (``jepa.training.checkpointing``): checkpoints are written atomically;
``--checkpoint_every_n_steps N`` adds a ``last-step.ckpt`` every N optimizer steps for long
epochs; SIGTERM / SIGUSR1 (SLURM preemption) save ``last-preempted.ckpt`` at the end of the current
step and exit with status 75; ``--ckpt_path last`` resumes from the newest ``last*.ckpt``
(weights, optimizer, schedules, EMA target, step counters, RNG states and the position in
the epoch's data order). Before training starts, ``jepa.training.preflight`` checks data paths, clip
lengths, input sizes and the checkpoint to resume; a bad value stops the run with one line
naming the key (exit status 2), as do unknown keys and wrong types.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI


def default_trainer() -> dict[str, Any]:
    """Trainer defaults a recipe may override."""
    return {
        "precision": "bf16-mixed" if torch.cuda.is_available() else "32-true",
        "default_root_dir": "outputs/run",
    }


CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"
LR_MONITOR = "lightning.pytorch.callbacks.LearningRateMonitor"
PREEMPTION = "jepa.training.checkpointing.PreemptionCheckpoint"
SKIPPED = "jepa.training.callbacks.SkippedFilesMonitor"
ATOMIC_IO = "jepa.training.checkpointing.AtomicCheckpointIO"
FSDP = "jepa.training.distributed.JepaFSDPStrategy"
EXIT_CONFIG, EXIT_FAILED, EXIT_PREEMPTED = 2, 1, 75  # 75: EX_TEMPFAIL, "try again"


class JepaCLI(LightningCLI):
    """LightningCLI that fills in the project's loggers and callbacks under ``default_root_dir``.

    Filled in after all overrides, so ``--trainer.default_root_dir DIR`` moves everything:
    ``logger`` unset -> CSV (``DIR/csv``) + offline wandb (``DIR/wandb``); no checkpoint
    callback -> ``last.ckpt`` (every epoch) and the best ``val/loss`` in ``DIR/checkpoints``
    (a recipe's own ModelCheckpoint without ``dirpath`` gets that folder too); an LR monitor;
    ``PreemptionCheckpoint`` and ``SkippedFilesMonitor``; ``AtomicCheckpointIO`` unless
    ``trainer.plugins`` is set. ``--trainer.strategy fsdp`` means ``JepaFSDPStrategy``.
    """

    def init_parser(self, **kwargs: Any) -> Any:
        parser = super().init_parser(**kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # error_handler is the documented hook, if not the newest one
            parser.error_handler = _one_line_parse_error
        return parser

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a bad value raised by a constructor is a one-line config error."""
        from jepa.training.preflight import ConfigError

        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as e:
            root: BaseException = e  # jsonargparse wraps the constructor's error: report the original
            while (root.__cause__ or root.__context__) is not None:
                root = root.__cause__ or root.__context__  # type: ignore[assignment]
            text = str(root).strip()
            raise ConfigError(text.splitlines()[0] if text else type(root).__name__) from e

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--checkpoint_every_n_steps", type=int | None, default=None,
            help="also write checkpoints/last-step.ckpt every N optimizer steps (for long epochs)",
        )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, then fill in the defaults, so ``--print_config`` shows the loggers and callbacks
        the run will really use (jsonargparse would print before they are filled in)."""
        import sys

        if isinstance(args, dict) or (args is not None and not isinstance(args, (list, tuple))):
            return super().parse_arguments(parser, args)  # a config object from Python: nothing to print
        argv = list(sys.argv[1:] if args is None else args)
        printing = [a for a in argv if a == "--print_config" or a.startswith("--print_config=")]
        super().parse_arguments(parser, [a for a in argv if a not in printing])
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        _fill_defaults(cfg)
        if printing:
            flags = printing[-1].partition("=")[2]
            kwargs = {"skip_default": "skip_default" in flags, "skip_none": "skip_null" in flags}
            target = self._subcommand_parsers[sub] if sub else parser
            sys.stdout.write(target.dump(cfg, **kwargs))
            raise SystemExit(0)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg["trainer"]["default_root_dir"]
        _RUN["root"], _RUN["existed"], _RUN["before"] = root, os.path.exists(root), _log_dirs(root)
        from jepa.training.preflight import check_writable

        check_writable("trainer.default_root_dir", root)

    def _parse_ckpt_path(self) -> None:
        """Check an explicit ``--ckpt_path`` file before LightningCLI reads hyper-parameters from it."""
        import importlib

        from jepa.training.checkpointing import (
            CheckpointError,
            check_checkpoint_matches,
            read_checkpoint,
        )

        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if path and path not in ("last", "best", "hpc", "registry"):
            try:
                ckpt = read_checkpoint(path)
            except CheckpointError as e:
                raise CheckpointError(f"--ckpt_path: {e}") from e
            class_path = getattr(self.config[sub].get("model"), "class_path", None)
            if class_path:
                module, _, name = class_path.rpartition(".")
                check_checkpoint_matches(ckpt, path, getattr(importlib.import_module(module), name))
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        from jepa.training.preflight import preflight

        ckpt = self.config_init[self.subcommand].get("ckpt_path") if self.subcommand else None
        preflight(self.model, self.datamodule, self.trainer, ckpt)


def _fill_defaults(cfg: Any) -> None:
    """Fill in the project's loggers, callbacks and checkpoint I/O under ``default_root_dir``."""
    trainer = cfg["trainer"]
    if trainer.get("strategy") == "fsdp":  # FSDP2 per Block (jepa.training.distributed)
        trainer["strategy"] = _ns(FSDP)
    root = trainer.get("default_root_dir") or "outputs/run"
    trainer["default_root_dir"] = root
    if trainer.get("logger") in (None, True):
        trainer["logger"] = [
            _ns("lightning.pytorch.loggers.CSVLogger", save_dir=root, name="csv"),
            _ns("jepa.training.loggers.OfflineWandbLogger", save_dir=root, project="jepa", offline=True),
        ]
    callbacks = list(trainer.get("callbacks") or [])
    paths = [getattr(cb, "class_path", "") for cb in callbacks]
    if trainer.get("enable_checkpointing") is not False and CHECKPOINT not in paths:
        # Two callbacks: Lightning (2.6) writes ``save_last`` only when a top-k checkpoint was
        # saved in the same step, so one monitored callback would leave ``last.ckpt`` at the
        # best epoch and lose every later one.  ``last`` is an unmonitored top-1 under a fixed
        # name, rewritten every epoch.
        callbacks.append(_ns(CHECKPOINT, filename="last", monitor=None, save_top_k=1, save_last=False))
        callbacks.append(
            _ns(CHECKPOINT, filename="best-{epoch}-{step}", monitor="val/loss", mode="min", save_top_k=1,
                save_last=False)
        )
    every = cfg.get("checkpoint_every_n_steps")
    if every and trainer.get("enable_checkpointing") is not False:
        # A separate callback: ModelCheckpoint takes either a step or an epoch trigger, and
        # the epoch-end ``last.ckpt`` must stay (the final state is never left unsaved).
        callbacks.append(
            _ns(CHECKPOINT, filename="last-step", monitor=None, save_top_k=1, save_last=False,
                every_n_train_steps=int(every))
        )
    if LR_MONITOR not in paths and trainer.get("logger") is not False:  # it needs a logger
        callbacks.append(_ns(LR_MONITOR, logging_interval="step"))
    if PREEMPTION not in paths and trainer.get("enable_checkpointing") is not False:
        callbacks.append(_ns(PREEMPTION))
    if SKIPPED not in paths:
        callbacks.append(_ns(SKIPPED))
    plugins = trainer.get("plugins")
    if plugins is None:
        trainer["plugins"] = [_ns(ATOMIC_IO)]
    for cb in callbacks:
        if getattr(cb, "class_path", "") == CHECKPOINT and cb.init_args.get("dirpath") is None:
            cb.init_args["dirpath"] = os.path.join(root, "checkpoints")
    trainer["callbacks"] = callbacks


def _ns(class_path: str, **init_args: Any) -> Any:
    from jsonargparse import Namespace

    return Namespace(class_path=class_path, init_args=Namespace(**init_args))


def run(argv: Sequence[str]) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``) with ``argv`` after ``jepa``."""
    import sys

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_MODE", "offline")
    # Lightning warns about both; we pass argv on purpose, and the EMA target is eval by design.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # Noise a user cannot act on: pytree deprecations inside Lightning, the best-checkpoint monitor
    # before the first validation (last.ckpt is still written), and advertising tips.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*could not find the monitored key in the returned metrics")
    _quiet_tips()

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from data_pipelines.dataset import NoUsableData
    from data_pipelines.decoding import DecodeError
    from jepa.methods.init_from import InitFromError
    from jepa.methods.nonfinite import NonFiniteLossError
    from jepa.training.checkpointing import CheckpointError, Preempted
    from jepa.training.preflight import ConfigError

    command = f"jepa {argv[0]}" if argv else "jepa"
    _RUN.clear()
    try:
        JepaCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=None if list(argv) == sys.argv[1:] else list(argv),
            trainer_defaults=default_trainer(),
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except (ConfigError, CheckpointError, InitFromError) as e:
        _clean_failed_start()
        return _fail(command, e, EXIT_CONFIG)
    except (NoUsableData, DecodeError) as e:
        _clean_failed_start()
        return _fail(command, e, EXIT_FAILED)
    except NonFiniteLossError as e:
        return _fail(command, e, EXIT_FAILED)
    except Preempted as e:
        print(f"{command}: {e}", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    except SIGTERMException:
        print(f"{command}: stopped by SIGTERM; resume with --ckpt_path last", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    return 0


def _quiet_tips() -> None:
    """Drop Lightning's product tips (``💡 Tip: ...``) from its info log, and send its info lines
    (seed, devices) to stdout, so stderr carries only warnings and the one-line error."""
    import logging
    import sys

    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is sys.stderr:
                handler.setStream(sys.stdout)

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.getMessage()).lstrip().startswith("💡")

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in log.filters):
            log.addFilter(_NoTips())


_RUN: dict[str, Any] = {}  # this invocation's run folder, for cleaning up after a failed start


LOG_DIRS = ("csv/version_*", "wandb/offline-run-*", "wandb/run-*", "wandb/latest-run")


def _log_dirs(root: str) -> set[str]:
    from pathlib import Path

    return {str(d) for pattern in LOG_DIRS for d in Path(root).glob(pattern)} if os.path.isdir(root) else set()


def _clean_failed_start() -> None:
    """Remove what a run that failed before saving anything left behind (logger folders that
    ``wandb sync`` would upload as junk runs); a folder with any checkpoint is never touched."""
    import shutil
    from pathlib import Path

    root = _RUN.get("root")
    if not root or not os.path.isdir(root) or any(Path(root).rglob("*.ckpt")):
        return
    if not _RUN.get("existed"):
        shutil.rmtree(root, ignore_errors=True)
        return
    for d in _log_dirs(root) - _RUN.get("before", set()):  # made by this invocation
        p = Path(d)
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _one_line_parse_error(parser: Any, message: str) -> None:
    """A config or command-line error as one line naming the key and value (no usage dump), exit 2."""
    import re
    import sys

    text = " ".join(str(message).split())
    text = re.sub(r"\s*Given value type: .*$", "", text)
    m = re.search(r"Parser key \"(\w+)\": Does not validate against any of the Union subtypes.*?"
                  r"Problem with given class_path '([\w.]+)': (.*?)(?: - Expected a <class 'NoneType'>.*)?$", text)
    if m:
        group, cls, inner = m.groups()
        opt = re.search(r"Option '(\w+)' is not accepted", inner)
        typ = re.search(r"Parser key \"([\w.]+)\": Expected a <class '(\w+)'>\. Got value: (.*)$", inner)
        if opt:
            text = f"{group}.init_args.{opt.group(1)} is not an option of {cls}"
        elif typ:
            text = f"{group}.init_args.{typ.group(1)}: expected {typ.group(2)}, got {typ.group(3)!r}"
        else:
            text = f"{group} ({cls}): {inner}"
    if len(text) > 400:
        text = text[:400].rsplit(" ", 1)[0] + " ..."
    prog = (getattr(parser, "prog", "") or "jepa").replace(" [options]", "")
    if not prog.startswith("jepa"):
        prog = f"jepa {prog.split()[-1]}" if prog.split() else "jepa"
    print(f"{prog}: error: {text} (`{prog} --help` lists the options)", file=sys.stderr, flush=True)
    sys.exit(2)


def _fail(command: str, error: Exception, code: int) -> int:
    """One line naming the problem (``JEPA_TRACEBACK=1`` shows the traceback as well)."""
    import sys
    import traceback

    if os.environ.get("JEPA_TRACEBACK"):
        traceback.print_exc()
    text = str(error).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker: keep the worker's message
        text = text.splitlines()[-1]
    print(f"{command}: error: {text}", file=sys.stderr, flush=True)
    return code
