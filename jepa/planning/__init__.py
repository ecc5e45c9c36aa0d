"""Planning in latent space: CEM and MPPI over action sequences, energies, and the MPC loop.

    planner = MPPI(horizon=16, samples=256, iterations=6, action_low=-2.5, action_high=2.5, max_norm=2.5)
    cost = LatentCost(world_model, obs, goal_obs, frameskip=5)     # energy of [N, H, A] action samples
    actions = planner.plan(cost)                                   # [H, A], the refined mean
"""

from jepa.planning.energy import latent_energy
from jepa.planning.samplers import CEM, MPPI, Planner, make_planner

__all__ = ["CEM", "MPPI", "Planner", "latent_energy", "make_planner"]
