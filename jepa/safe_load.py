"""Reading torch files without running code from them.

Checkpoints and encoder files are pickles, and ``torch.load(weights_only=False)`` runs whatever
code a file names: a checkpoint someone sent you could execute anything. Everything jepa writes
(Lightning checkpoints from ``jepa fit``, encoder files from ``jepa export``) holds only tensors,
plain containers, numbers and strings, so it loads with ``weights_only=True``, and that is the
default everywhere. A file that needs more is refused with one line naming the file and the
Python object it wants to build. For a file you trust: ``trust=True`` in Python,
``--trust-checkpoint`` on the command line, or ``JEPA_TRUST_CHECKPOINTS=1`` in the environment
(which also covers ``jepa fit --ckpt_path``).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["TRUST_ENV", "UnsafeFileError", "describe_file", "is_trusted", "refusal", "torch_load"]

TRUST_ENV = "JEPA_TRUST_CHECKPOINTS"


class UnsafeFileError(ValueError):
    """The file needs code execution to load and was not marked as trusted."""


def is_trusted(trust: bool = False) -> bool:
    """``trust``, or the ``JEPA_TRUST_CHECKPOINTS=1`` opt-in for every file."""
    return bool(trust) or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _needed_global(message: str) -> str | None:
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    return m.group(1) if m else None


def refusal(path: str | os.PathLike[str], error: BaseException) -> UnsafeFileError | None:
    """The one-line :class:`UnsafeFileError` for a ``weights_only`` refusal, or None for other errors."""
    if not isinstance(error, pickle.UnpicklingError):
        return None
    needed = _needed_global(str(error))
    if needed is None:  # truncated or corrupt, not a refusal: the caller reports it as such
        return None
    what = f"the Python object {needed}"
    return UnsafeFileError(
        f"{Path(path)}: refusing to load it because it needs {what}, and building it could run code from "
        f"the file; if you trust this file, pass --trust-checkpoint (Python: trust=True) or set {TRUST_ENV}=1"
    )


def torch_load(path: str | os.PathLike[str], map_location: Any = "cpu", trust: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` unless the file is trusted (see the module doc).

    Raises :class:`UnsafeFileError` (one line: the file, the object it needs, how to opt in) when a
    safe load is refused; other read errors (truncated, not a torch file) propagate unchanged.
    """
    if is_trusted(trust):
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = refusal(path, e)
        if refused is None:
            raise
        raise refused from e


def describe_file(obj: Any) -> str:
    """What a loaded torch file is, in words, for error messages."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}"
    if obj.get("format") == "jepa-encoder":
        return ("an encoder file from jepa export (weights only, no training state); use it with "
                "jepa.load_encoder / jepa probe --encoder, or as a world model's encoder_checkpoint")
    hp = obj.get("hyper_parameters") or {}
    if "state_dict" in obj and hp:
        if "action_dim" in hp or "rollout_steps" in hp:
            return "a world-model (ActionConditionedWorldModel) checkpoint from jepa fit"
        if "masks" in hp or "input_size" in hp:
            return "a VideoJEPA pretraining checkpoint from jepa fit"
        return "a Lightning checkpoint of another model"
    return f"a dict with keys {sorted(map(str, obj))[:6]}, no 'state_dict'"
