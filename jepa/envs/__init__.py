"""Environments for collecting trajectories and evaluating planners (numpy only, no simulator deps).

``TwoRooms`` is built in; Push-T comes from the optional ``gym-pusht`` package (``pip install
'jepa[envs]'``) through ``jepa.envs.pusht``.
"""

from jepa.envs.two_rooms import (
    Layout,
    TwoRooms,
    TwoRoomsConfig,
    clip_actions,
    dynamics,
    render_state,
)

__all__ = ["Layout", "TwoRooms", "TwoRoomsConfig", "clip_actions", "dynamics", "render_state"]
