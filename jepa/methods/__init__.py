"""Training methods: thin LightningModules over the networks in ``jepa.models`` and the objective
parts in ``jepa.objectives``.

    VideoJEPA                     V-JEPA pretraining of a video encoder (``vjepa``)
    ActionConditionedWorldModel   action-conditioned JEPA world model (``world_model``)
    JepaMethod                    their shared base: optimiser, schedules, EMA, logging (``base``)
"""

from jepa.methods.base import JepaMethod, param_groups
from jepa.methods.vjepa import VideoJEPA
from jepa.methods.world_model import ActionConditionedWorldModel, load_world_model

__all__ = ["ActionConditionedWorldModel", "JepaMethod", "VideoJEPA", "load_world_model", "param_groups"]
