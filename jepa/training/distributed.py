"""FSDP for jepa models: every transformer ``Block`` sharded with PyTorch's FSDP2 (``fully_shard``).

``jepa fit ... --trainer.strategy fsdp`` runs ``JepaFSDPStrategy``, Lightning's
``ModelParallelStrategy`` set up for pure data parallelism (one mesh dimension over all
ranks). The LightningModules' ``configure_model`` calls ``shard_module``, which wraps

  * each ``jepa.models.blocks.Block`` (gathered only for its own forward / backward), optionally
    with activation checkpointing (``activation_checkpointing: true``: the networks'
    ``set_grad_checkpointing``, recompute rather than store; state-dict keys are unchanged);
  * then every top-level network (context encoder, EMA target encoder, predictor, ...) as a
    group root holding its remaining parameters (patch embedding, norms, projections).

The EMA target encoder is sharded exactly like the context encoder, so each rank holds the
matching shard of both and ``TargetEncoder.update`` (elementwise over ``parameters()``, here
DTensors with identical placements) moves each shard locally, with no communication.
Checkpoints are gathered into one full state dict on rank 0 by default
(``save_distributed_checkpoint: false``), loadable anywhere (DDP, one device,
``jepa.load_encoder``); ``true`` writes a folder of shards for models too large to gather.

FSDP2 runs on CPU (gloo) as well as GPU (NCCL), which is how the tests check it against a
single process.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

# Methods other than forward() that run a sharded module's parameters (FSDP2 gathers on them).
SHARDED_METHODS = ("embed", "forward_tokens", "forward_features", "get_intermediate_layers", "rollout")


class JepaFSDPStrategy(ModelParallelStrategy):
    """``ModelParallelStrategy`` as plain FSDP: data parallel over every rank, no tensor parallel.

    Args:
        activation_checkpointing: checkpoint each Block's activations (read by ``shard_module``).
        save_distributed_checkpoint: write sharded checkpoint folders instead of one full file.
        data_parallel_size: ranks sharing the data ("auto": all of them).
        tensor_parallel_size: kept at 1 (jepa models are not tensor-parallel).
        **kwargs: anything else ``ModelParallelStrategy`` takes.
    """

    strategy_name = "jepa_fsdp"

    def __init__(
        self,
        activation_checkpointing: bool = False,
        save_distributed_checkpoint: bool = False,
        data_parallel_size: int | Literal["auto"] = "auto",
        tensor_parallel_size: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            data_parallel_size=data_parallel_size, tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint, **kwargs,
        )
        self.activation_checkpointing = activation_checkpointing

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def shard_module(module: Any, children: dict[str, nn.Module | None]) -> bool:
    """Apply FSDP2 to ``children`` of a LightningModule when its strategy gave it a device mesh.

    Returns False (and does nothing) outside ``JepaFSDPStrategy`` / ``ModelParallelStrategy``.
    """
    mesh = getattr(module, "_device_mesh", None)
    if mesh is None:
        return False
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    from jepa.models.blocks import Block

    dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    strategy = module.trainer.strategy if module._trainer is not None else None
    checkpointing = bool(getattr(strategy, "activation_checkpointing", False))
    for child in children.values():
        if child is None:
            continue
        if checkpointing and callable(getattr(child, "set_grad_checkpointing", None)):
            child.set_grad_checkpointing()  # torch.utils.checkpoint per Block; state-dict keys unchanged
        for sub in list(child.modules()):
            if isinstance(sub, Block):
                fully_shard(sub, mesh=dp_mesh)
        fully_shard(child, mesh=dp_mesh)
        for method in SHARDED_METHODS:
            fn = getattr(child, method, None)
            if callable(fn) and not isinstance(fn, nn.Module):
                register_fsdp_forward_method(child, method)
    return True
