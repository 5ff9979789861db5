"""How physical is a maze2d synthetic store? Walls, reward labels and step sizes, against the real data.

Written for issue 15's sweep, where the ``rollout`` arm (MBPO-style h-step world-model rollouts) scored
about 0 on maze2d-umaze while base and dydiff scored about 43. For the real dataset and each store given
it reports, per transition (positions are observations[:, :2], the maze's cells are 1 x 1):

* ``in_wall``: share of next positions inside a wall cell of the maze grid, or outside the grid;
* ``crosses_wall``: share of transitions whose segment (x -> x') passes through a wall cell (sampled at
  16 points along it), i.e. a move the real maze cannot make;
* ``reward_mismatch``: share whose reward label differs from the env's sparse reward at the next position
  (1 within 0.45 of the fixed goal, :mod:`stores.maze_env`); the real data's own value checks the rule;
* ``reward_mean``, ``step_mean`` (mean |x' - x|) and ``step_p99`` (99th percentile), in maze units;
* ``action_abs_mean`` and ``action_saturated`` (share of components with |a| > 0.99).

With ``--model RUN/model.d3`` it also reads that learner's critic on 5,000 real rows
(:func:`critic_report`): a Q above ``1 / (1 - gamma)`` = 100 is a value no policy can earn here.

    python3 benchmarks/probe_maze_synthetic.py --dataset maze2d-umaze \
        --store ROOT/maze2d-umaze/td3bc/runs/rollout/seed_0/synthetic.zarr --store ... --out probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def wall_mask(xy: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(N,) bool: the point ``xy`` (N, 2) lies in a wall cell of ``grid`` (H, W; 1 = wall) or off it.

    Cell (row, col) covers ``x in [col - W/2, col + 1 - W/2)``, ``y in (H/2 - row - 1, H/2 - row]``
    (:func:`stores.maze.cells_of`)."""
    from stores.maze import cells_of

    rows, cols = grid.shape
    r, c = cells_of(xy, grid.shape)
    off = (r < 0) | (r >= rows) | (c < 0) | (c >= cols)
    inside = np.zeros(len(xy), dtype=bool)
    ok = ~off
    inside[ok] = grid[r[ok], c[ok]] == 1
    return off | inside


def crosses_wall(x0: np.ndarray, x1: np.ndarray, grid: np.ndarray, points: int = 16) -> np.ndarray:
    """(N,) bool: the segment from ``x0`` to ``x1`` (N, 2 each) touches a wall cell at any of ``points``
    evenly spaced points (ends included)."""
    hit = np.zeros(len(x0), dtype=bool)
    for t in np.linspace(0.0, 1.0, points):
        hit |= wall_mask(x0 + t * (x1 - x0), grid)
    return hit


def physics_report(obs: np.ndarray, next_obs: np.ndarray, rewards: np.ndarray, grid: np.ndarray,
                   goal: np.ndarray) -> dict[str, float]:
    """The shares and means described in the module docstring, for (N, obs) observation arrays."""
    from stores.maze_env import GOAL_RADIUS

    x0, x1 = obs[:, :2].astype(np.float64), next_obs[:, :2].astype(np.float64)
    rule = (np.linalg.norm(x1 - goal, axis=1) <= GOAL_RADIUS).astype(np.float64)
    step = np.linalg.norm(x1 - x0, axis=1)
    return {"transitions": int(len(obs)), "in_wall": float(wall_mask(x1, grid).mean()),
            "crosses_wall": float(crosses_wall(x0, x1, grid).mean()),
            "reward_mismatch": float((np.abs(rewards.astype(np.float64) - rule) > 0.5).mean()),
            "reward_mean": float(rewards.mean()), "step_mean": float(step.mean()),
            "step_p99": float(np.quantile(step, 0.99))}


def action_report(actions: np.ndarray) -> dict[str, float]:
    """Mean |a| and the share of saturated action components (|a| > 0.99) of (N, act) actions in [-1, 1]:
    the real data's noisy controller saturates often, a learner's policy in model rollouts rarely."""
    a = np.abs(actions.astype(np.float64))
    return {"action_abs_mean": float(a.mean()), "action_saturated": float((a > 0.99).mean())}


def critic_report(model_path: str, observations: np.ndarray, actions: np.ndarray, *, gamma: float = 0.99,
                  r_max: float = 1.0) -> dict[str, float]:
    """A saved d3rlpy learner's critic on real (s, a) rows: mean Q(s, a_data), mean Q(s, pi(s)), the share
    of rows with Q(s, pi(s)) above the bound ``r_max / (1 - gamma)`` (100 for the sparse 0/1 reward: no
    discounted return can exceed it), and mean |pi(s) - a_data|."""
    import d3rlpy

    learner = d3rlpy.load_learnable(model_path, device="cpu:0")
    pi = learner.predict(observations)
    q_data, q_pi = learner.predict_value(observations, actions), learner.predict_value(observations, pi)
    bound = r_max / (1.0 - gamma)
    return {"q_data_mean": float(q_data.mean()), "q_pi_mean": float(q_pi.mean()),
            "q_pi_above_bound": float((q_pi > bound).mean()), "q_bound": bound,
            "pi_minus_data_abs": float(np.abs(pi - actions).mean())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from stores.datasets import load_dataset
    from stores.maze import cell_center
    from stores.maze_env import MAZE_SPECS, maze_map, maze_of_env_id
    from stores.replay import ReplayStore

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="maze2d-umaze")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--store", action="append", default=[], help="a synthetic Zarr store (repeatable)")
    ap.add_argument("--model", action="append", default=[],
                    help="a run's model.d3: its critic on 5,000 real rows (repeatable)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    data = load_dataset(args.dataset, profile=args.profile, progress=False)
    maze = maze_of_env_id(data.env_id or "")
    if maze is None:
        raise SystemExit(f"{args.dataset} is not a maze2d dataset (env {data.env_id})")
    grid = np.asarray(maze_map(maze), dtype=np.int64)
    goal = cell_center(MAZE_SPECS[maze][1], grid.shape)
    t = data.transitions
    real = physics_report(t.observations, t.next_observations, t.rewards, grid, goal)
    report: dict[str, Any] = {"dataset": data.name, "goal": goal.tolist(),
                              "real": {**real, **action_report(t.actions)}}
    for path in args.store:
        rows = ReplayStore.open(path).load(["observations", "next_observations", "rewards", "actions"])
        report[path] = {**physics_report(rows["observations"], rows["next_observations"], rows["rewards"],
                                         grid, goal), **action_report(rows["actions"])}
    n = len(t.observations)
    rows_i = np.random.default_rng(0).choice(n, min(5000, n), replace=False)
    for path in args.model:
        report[path] = critic_report(path, t.observations[rows_i], t.actions[rows_i])
    for name, row in report.items():
        if isinstance(row, dict) and ("in_wall" in row or "q_pi_mean" in row):
            print(f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
