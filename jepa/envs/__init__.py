"""Environments for collecting trajectories and evaluating planners (numpy only, no simulator deps).

Every environment implements :class:`jepa.envs.base.Env` and is made by name through the registry
(``make_env("two-rooms")``, ``env_names()``, ``register(name, factory)``). ``TwoRooms`` is built
in; Push-T comes from the optional ``gym-pusht`` package (``pip install 'jepa[envs]'``) through
``jepa.envs.pusht``, imported only when a ``pusht`` environment is made.
"""

from jepa.envs.base import Env
from jepa.envs.policies import RandomWalkPolicy
from jepa.envs.registry import env_names, make_env, register
from jepa.envs.two_rooms import (
    Layout,
    TwoRooms,
    TwoRoomsConfig,
    clip_actions,
    dynamics,
    render_state,
)

__all__ = [
    "Env",
    "Layout",
    "RandomWalkPolicy",
    "TwoRooms",
    "TwoRoomsConfig",
    "clip_actions",
    "dynamics",
    "env_names",
    "make_env",
    "register",
    "render_state",
]
