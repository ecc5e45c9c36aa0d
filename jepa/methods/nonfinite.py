"""What a training step does with a NaN or infinite loss.

``NonFiniteGuard`` is mixed into the LightningModules. Each step's loss is checked (one host
sync); under DDP the verdict is all-reduced, so every rank takes the same branch and none is
left waiting in a collective. Two policies (``model.init_args.nonfinite``):

  stop  (default) raise ``NonFiniteLossError`` naming the step and the offending loss terms.
        Nothing is saved after the bad step, so the last checkpoint on disk is the last good
        state; ``jepa fit`` prints the message and exits non-zero.
  skip  drop the step: the gradients are discarded before the optimizer sees them (AdamW
        leaves parameters without gradients untouched: no moment, weight-decay or EMA
        update), the skip is counted (``train/nonfinite_skipped``, saved in checkpoints), and
        training goes on. With gradient accumulation, one bad micro-batch drops the whole
        optimizer step. ``max_nonfinite_skips`` consecutive skips stop the run anyway: a
        diverged run should not burn a cluster allocation skipping every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning as L
import torch

NonFinitePolicy = Literal["stop", "skip"]


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN or infinite (the message names the step and the terms)."""


def describe(step: int, loss: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> str:
    """'non-finite loss at step 12: pred_loss=nan (var_loss=0.1, cov_loss=0.02)'."""
    values = {k: float(v.detach()) for k, v in terms.items() if k.endswith("loss")}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    good = [k for k in values if k not in bad]
    culprit = ", ".join(f"{k}={values[k]:.4g}" for k in bad) or f"loss={float(loss):.4g}"
    rest = f" (finite: {', '.join(f'{k}={values[k]:.4g}' for k in good)})" if good else ""
    return f"non-finite loss at step {step}: {culprit}{rest}"


class NonFiniteGuard(L.LightningModule):
    """Mixin: call ``self.guard_loss(loss, terms)`` in ``training_step``; ``optimizer_step``
    then honours the verdict. Subclasses set ``self.hparams.nonfinite`` (and optionally
    ``max_nonfinite_skips``) and run their own post-step work in ``after_optimizer_step``."""

    _skip_step: bool = False
    nonfinite_skipped: int = 0
    _consecutive_skips: int = 0

    def guard_loss(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> None:
        local_bad = not bool(torch.isfinite(loss.detach()))
        bad = local_bad
        if self.trainer.world_size > 1:  # the same verdict on every rank
            bad = bool(self.trainer.strategy.reduce_boolean_decision(local_bad, all=False))
        if not bad:  # (_skip_step stays set if an earlier micro-batch of this step was bad)
            return
        where = describe(self.global_step, loss, terms) if local_bad else (
            f"non-finite loss at step {self.global_step} on another rank"
        )
        policy = getattr(self.hparams, "nonfinite", "stop")
        limit = int(getattr(self.hparams, "max_nonfinite_skips", 100))
        if policy == "skip" and self._consecutive_skips < limit:
            if not self._skip_step:  # count steps, not micro-batches
                self.nonfinite_skipped += 1
                self._consecutive_skips += 1
            self._skip_step = True
            if self.trainer.is_global_zero:
                print(f"[jepa] {where}; step skipped ({self.nonfinite_skipped} so far)", flush=True)
            return
        if policy == "skip":
            raise NonFiniteLossError(f"{where}; {limit} consecutive steps skipped, stopping (the run has diverged)")
        raise NonFiniteLossError(
            f"{where}. Training stopped; checkpoints on disk are from before this step "
            "(resume with --ckpt_path last), or set model.init_args.nonfinite: skip to drop such steps"
        )

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        def closure() -> Any:
            out = optimizer_closure() if optimizer_closure is not None else None
            if self._skip_step:  # no gradient reaches the optimizer: AdamW skips every parameter
                optimizer.zero_grad(set_to_none=True)
            return out

        optimizer.step(closure=closure)
        if self._skip_step:
            self._skip_step = False  # verdicts cover one optimizer step (all its micro-batches)
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped))
            return
        self._consecutive_skips = 0
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Work after a real (not skipped) optimizer step, e.g. the EMA update."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["nonfinite_skipped"] = self.nonfinite_skipped

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_skipped = int(checkpoint.get("nonfinite_skipped", 0))
