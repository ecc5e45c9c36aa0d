"""Checkpoints that survive crashes and preemption, and clear errors for bad checkpoint files.

``AtomicCheckpointIO``  every checkpoint is written to a hidden temporary file in the same
                        folder, flushed and fsynced, then renamed over the destination
                        (``os.replace`` is atomic on POSIX): a process killed during a save
                        leaves the previous ``last.ckpt`` whole. Loading names the file in
                        every error (missing, truncated, not a Lightning checkpoint).
``PreemptionCheckpoint`` SIGTERM (sent by SLURM, Kubernetes, spot reclaim) and SIGUSR1 (SLURM's
                        ``--signal=USR1@90`` warning) set a flag; at the end of the current
                        training step every rank agrees to stop, ``last-preempted.ckpt`` is written
                        (atomically), the SLURM job is requeued after SIGUSR1, and the run
                        exits via ``Preempted``. The requeued job resumes with
                        ``--ckpt_path last``.
``read_checkpoint``     the validated dict of a checkpoint file, or ``CheckpointError``.

``jepa fit`` installs both by default (see ``jepa.training.lightning_cli``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from jepa.safe_load import UnsafeFileError, describe_file, torch_load


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not what the caller expects."""


class Preempted(Exception):  # noqa: N818 - an event, not a failure
    """Raised after the preemption checkpoint is written; ``jepa fit`` exits with status 75."""

    def __init__(self, signame: str, path: str, requeued: bool) -> None:
        self.signame, self.path, self.requeued = signame, path, requeued
        again = "the SLURM job was requeued" if requeued else "restart with --ckpt_path last"
        super().__init__(f"received {signame}: saved {path}; {again} to resume")


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu", trust: bool = False) -> dict[str, Any]:
    """Load a Lightning checkpoint written by ``jepa fit``; every failure names the file.

    Read without running code from the file (``weights_only``) unless ``trust`` or
    ``JEPA_TRUST_CHECKPOINTS=1`` (:mod:`jepa.safe_load`)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder; pass a .ckpt file (or 'last' to resume the newest last*.ckpt)")
    try:
        obj = torch_load(p, map_location=map_location, trust=trust)
    except UnsafeFileError as e:
        raise CheckpointError(str(e)) from e
    except Exception as e:  # truncated, corrupt, or not a torch file at all
        size = p.stat().st_size
        raise CheckpointError(
            f"{p} ({size} bytes) is not a readable checkpoint, truncated or corrupt? ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(obj, dict) or "state_dict" not in obj or obj.get("format") == "jepa-encoder":
        raise CheckpointError(f"{p} is not a Lightning checkpoint from jepa fit: it is {describe_file(obj)}")
    return obj



def check_checkpoint_matches(ckpt: dict[str, Any], path: str | os.PathLike[str], model: type | L.LightningModule) -> None:
    """Raise if ``ckpt`` was written by a different kind of model than ``model`` (a class or instance)."""
    import inspect

    cls = model if isinstance(model, type) else type(model)
    saved = set((ckpt.get("hyper_parameters") or {}).keys())
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    foreign = sorted(saved - accepted - {"_instantiator", "_class_path"})
    if foreign:
        raise CheckpointError(
            f"{path} was written by a different model than {cls.__name__}: its hyper-parameters "
            f"{foreign[:5]} are not arguments of {cls.__name__}"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file, fsync, then rename over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote file systems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)
        return None

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return read_checkpoint(path, map_location if map_location is not None else "cpu")


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj, path)`` such that ``path`` is either the old file or the whole new one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")  # hidden: never matches last*.ckpt
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return p


class PreemptionCheckpoint(Callback):
    """Save ``last-preempted.ckpt`` at the end of the step in which SIGTERM or SIGUSR1 arrived, then stop.

    Args:
        signals: signal names to handle.
        requeue: after SIGUSR1 inside a SLURM job, run ``scontrol requeue`` (rank 0).
        filename: checkpoint name inside the checkpoint folder; a ``last*`` name, so
            ``--ckpt_path last`` (the newest ``last*.ckpt``) picks it up.
    """

    def __init__(
        self, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1"), requeue: bool = True, filename: str = "last-preempted"
    ) -> None:
        self.signals = tuple(signals)
        self.requeue = requeue
        self.filename = filename
        self.received: str | None = None
        self.pending: Preempted | None = None
        self._saved = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        prev = self._previous.get(signum)
        if callable(prev) and prev is not self._handler:
            prev(signum, frame)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or os.name == "nt":
            return
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.signals:
            sig = getattr(signal, name)
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handler)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, prev in self._previous.items():
            if prev is not None:
                signal.signal(sig, prev)
        self._previous = {}

    def checkpoint_path(self, trainer: L.Trainer) -> Path:
        folders = [cb.dirpath for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
        folder = Path(folders[0]) if folders else Path(trainer.default_root_dir) / "checkpoints"
        return folder / f"{self.filename}.ckpt"

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        got = self.received is not None
        if trainer.world_size > 1:  # every rank must take part in the save
            got = bool(trainer.strategy.reduce_boolean_decision(got, all=False))
        if not got or self._saved:
            return
        name = self.received or "a signal (on another rank)"
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self._saved = True
        requeued = False
        if self.requeue and self.received == "SIGUSR1" and os.environ.get("SLURM_JOB_ID") and trainer.is_global_zero:
            job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
            requeued = subprocess.call(["scontrol", "requeue", job]) == 0
        self.pending = Preempted(name, str(path), requeued)
        if trainer.is_global_zero:
            print(f"[jepa] {self.pending}", flush=True)
        # Stop at the start of the next step (or the end of the epoch), once this step's metrics
        # have reached the loggers.

    def _stop(self) -> None:
        if self.pending is not None:
            raise self.pending

    def on_train_batch_start(self, *args: Any) -> None:
        self._stop()

    def on_train_epoch_end(self, *args: Any) -> None:
        self._stop()

    def on_train_end(self, *args: Any) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """Lightning itself stops with ``SIGTERMException`` when SIGTERM lands between steps (it
        checks at the start of a step under DDP): save then, between steps, if not yet done."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException) and not self._saved and trainer.state.fn == "fit":
            path = self.checkpoint_path(trainer)
            trainer.save_checkpoint(path)
            self._saved = True
            if trainer.is_global_zero:
                print(f"[jepa] received SIGTERM: saved {path}; restart with --ckpt_path last to resume", flush=True)
