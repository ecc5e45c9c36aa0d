"""Named planning-evaluation protocols: everything that decides what a success rate means.

A success rate is only comparable with another one measured under the same protocol: the layout
distribution, how starts and goals are drawn, the step budget, the success rule and the number of
episodes. ``jepa plan --protocol NAME`` selects one of these as a whole, and ``plan.json`` /
``plan.md`` record its name and every parameter. ``jepa data collect --protocol NAME`` collects
training data from the same layout distribution.

* ``eb-jepa`` (Two Rooms; EB-JEPA and PLDM): a new wall x in [20, 44] and door centre y in
  [10, 54] every episode, a 9 px door, border walls 4 px in from the edges, actions capped at
  2.45 px; start and goal always in opposite rooms, at least 6.6 px from the edges and 2.6 px from
  the wall; every episode runs its full 200-step budget and succeeds when its *final* position is
  within 4.5 px of the goal; 20 episodes per evaluation, as EB-JEPA's ``eval.yaml``.
* ``eb-jepa-fixed`` (Two Rooms; EB-JEPA's ``fix_wall`` setting): as ``eb-jepa`` with the wall at
  x = 32 and the door centred at y = 18 in every episode.
* ``first-contact`` (Two Rooms; this project's earlier rule, kept for comparison with old runs, never
  a headline): one fixed layout (wall at x = 32, 12 px door), even episodes put the goal in the
  other room and odd ones anywhere, and an episode stops and succeeds the first time the agent
  comes within 4.5 px.
* ``swm`` (Push-T; stable-worldmodel / LeWM): the start is a recorded state of a *held-out*
  trajectory (``jepa plan --trajectories MANIFEST``, never the model's training split) and the
  goal the recorded state 25 environment steps later; 50-step budget; DINO-WM's success test at
  any step (stable-worldmodel marks an episode solved the first time the env terminates); 50
  episodes. (stable-worldmodel itself samples the rows from its training dataset.)
* ``dino-wm`` (Push-T; DINO-WM's own evaluation, ``conf/plan.yaml`` with ``goal_source: dset``,
  ``goal_H: 5``, frameskip 5, and ``plan_pusht.yaml``'s 50 evaluations): the start is a recorded
  state of a held-out trajectory and the goal the state reached by *replaying* the next 25
  recorded actions from it; the budget is those 25 environment steps (DINO-WM's planning horizon
  of 5 steps of 5 frames), and success is DINO-WM's ``eval_state`` on the *final* state; 50
  episodes. DINO-WM plans this open loop (CEM over the 5 steps, 300 samples, 30 iterations, top
  30): ``jepa plan --replan-every 25 --horizon 5`` does the same; its MPC variant replans after
  all 5 steps until success, with no cap on replans, and is not this protocol.
* ``pusht-first-contact`` (Push-T; this project's earlier rule, never a headline): goals are the end
  of a random walk that moves the block, DINO-WM's success test, the episode stops at the first
  success within 200 steps.

The headline protocols (``DEFAULTS``, used when ``--protocol`` is not given): ``eb-jepa`` for Two
Rooms, ``swm`` for Push-T.

Every protocol redraws a start that already passes the success test (no episode is won at step 0).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from jepa.envs.two_rooms import EB_JEPA_FIXED_LAYOUT, EB_JEPA_LAYOUT

__all__ = ["PROTOCOLS", "Protocol", "default_protocol", "get_protocol", "wilson_interval"]

GOAL_RULES = ("other-room", "alternate", "env", "dataset")
GOAL_SOURCES = ("recorded", "replayed")
UNTIL_RULES = ("budget", "success")


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol (see the module doc for the registered ones)."""

    name: str
    env: str
    description: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the layout distribution (env config fields)
    goals: str = "env"  # "other-room": always the other room; "alternate": even episodes other room; "env": env's own
    # draw; "dataset": start = a recorded state of a held-out trajectory, goal = the state goal_offset steps later
    goal_offset: int = 0  # "dataset" goals: environment steps between start and goal
    goal_source: str = "recorded"  # "dataset" goals: the recorded state, or "replayed" (the recorded actions re-run)
    max_steps: int = 200
    until: str = "budget"  # "budget": judge the final state after all steps; "success": stop at first success
    episodes: int = 50
    reference: str = ""

    def __post_init__(self) -> None:
        if self.goals not in GOAL_RULES:
            raise ValueError(f"Protocol {self.name}: goals must be one of {GOAL_RULES}, got {self.goals!r}")
        if self.until not in UNTIL_RULES:
            raise ValueError(f"Protocol {self.name}: until must be one of {UNTIL_RULES}, got {self.until!r}")
        if self.goal_source not in GOAL_SOURCES:
            raise ValueError(f"Protocol {self.name}: goal_source must be one of {GOAL_SOURCES}, got {self.goal_source!r}")
        if self.goals == "dataset" and self.goal_offset < 1:
            raise ValueError(f"Protocol {self.name}: dataset goals need goal_offset >= 1, got {self.goal_offset}")

    @property
    def needs_trajectories(self) -> bool:
        """Starts and goals come from recorded (held-out) trajectories: ``jepa plan --trajectories``."""
        return self.goals == "dataset"

    @property
    def success_rule(self) -> str:
        return "final state after the full budget" if self.until == "budget" else "first success (episode stops there)"

    def other_room(self, episode: int) -> bool | None:
        """The ``other_room`` argument of ``Env.sample_goal`` for episode ``episode``."""
        if self.goals == "other-room":
            return True
        if self.goals == "alternate":
            return True if episode % 2 == 0 else None
        return None

    def describe(self) -> dict[str, Any]:
        """Every parameter, JSON-ready (tuples become lists)."""
        out = asdict(self)
        out["env_kwargs"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.env_kwargs.items()}
        out["success_judged_on"] = self.success_rule
        if not self.needs_trajectories:
            out.pop("goal_offset")
            out.pop("goal_source")
        return out


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="eb-jepa", env="two-rooms", env_kwargs=dict(EB_JEPA_LAYOUT), goals="other-room", max_steps=200,
            until="budget", episodes=20,
            description="EB-JEPA / PLDM Two Rooms: random wall x in [20, 44] and door y in [10, 54] per episode, "
                        "9 px door, border walls 4 px in from the edges, actions capped at 2.45 px; start and goal in "
                        "opposite rooms; the full 200 steps always run; success = final position within 4.5 px of "
                        "the goal; 20 episodes per evaluation",
            reference="EB-JEPA (facebookresearch/eb_jepa), examples/ac_video_jepa: eval.yaml (20 episodes, 200 "
                      "steps), datasets/two_rooms (layouts, start/goal draw, 4.5 px final-state test); "
                      "97 +- 2% with MPPI (3 seeds x last 3 epochs)",
        ),
        Protocol(
            name="eb-jepa-fixed", env="two-rooms", env_kwargs=dict(EB_JEPA_FIXED_LAYOUT), goals="other-room",
            max_steps=200, until="budget", episodes=20,
            description="EB-JEPA Two Rooms, fixed-wall setting: wall at x = 32, 9 px door centred at y = 18, border "
                        "walls 4 px in, actions capped at 2.45 px; start and goal in opposite rooms; the full 200 "
                        "steps always run; success = final position within 4.5 px of the goal; 20 episodes",
            reference="EB-JEPA (facebookresearch/eb_jepa) data_config.yaml fix_wall: true (fix_wall_location 32, "
                      "fix_door_location 18); README reports 98% with a fixed wall",
        ),
        Protocol(
            name="first-contact", env="two-rooms", goals="alternate", max_steps=200, until="success", episodes=50,
            description="fixed layout (wall x = 32, 12 px door); even episodes goal in the other room, odd anywhere; "
                        "stops at the first time within 4.5 px (this project's earlier rule; not comparable with EB-JEPA)",
        ),
        Protocol(
            name="swm", env="pusht", goals="dataset", goal_offset=25, goal_source="recorded", max_steps=50,
            until="success", episodes=50,
            description="stable-worldmodel / LeWM Push-T: start = a recorded state of a held-out trajectory, goal = "
                        "the recorded state 25 environment steps later; 50-step budget; success = DINO-WM's test "
                        "(agent + block positions within 20, block angle within pi/9) at any step (the episode "
                        "stops there); 50 episodes",
            reference="galilai-group/stable-worldmodel scripts/plan/config/pusht.yaml (num_eval 50, "
                      "goal_offset_steps 25, eval_budget 50) and world.py (success = terminated at any step). "
                      "stable-worldmodel draws its rows from the training dataset; here they must be held out",
        ),
        Protocol(
            name="dino-wm", env="pusht", goals="dataset", goal_offset=25, goal_source="replayed", max_steps=25,
            until="budget", episodes=50,
            description="DINO-WM Push-T: start = a recorded state of a held-out trajectory, goal = the state reached "
                        "by replaying the next 25 recorded actions; 25-step budget (5 planning steps x frameskip 5); "
                        "success = DINO-WM's test (||(agent, block) xy - goal|| < 20, block angle within pi/9) on the "
                        "final state; 50 episodes",
            reference="gaoyuezhou/dino_wm plan.py (prepare_targets with goal_source 'dset': replayed recorded "
                      "actions, traj_len = frameskip * goal_H + 1), conf/plan.yaml (goal_H 5), plan_pusht.yaml "
                      "(n_evals 50), env/pusht eval_state; planner/cem.yaml (horizon 5, 300 samples, 30 opt steps, "
                      "top 30). DINO-WM reports 0.90 on Push-T",
        ),
        Protocol(
            name="pusht-first-contact", env="pusht", goals="env", max_steps=200, until="success", episodes=50,
            description="goal = end of a random walk that moves the block; DINO-WM's success test; stops at the first "
                        "success within 200 steps (this project's earlier rule; not the DINO-WM or stable-worldmodel "
                        "protocol)",
        ),
    )
}

DEFAULTS = {"two-rooms": "eb-jepa", "pusht": "swm"}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known protocols: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def default_protocol(env: str) -> Protocol | None:
    """The headline protocol of an environment (None for environments without one)."""
    return PROTOCOLS[DEFAULTS[env]] if env in DEFAULTS else None


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default); (0, 1) when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi
