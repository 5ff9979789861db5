"""benchmarks/probe_maze_synthetic.py: wall, crossing and reward checks on hand-placed U-Maze points."""

from __future__ import annotations

from types import ModuleType

import numpy as np
from baselines_data import load_benchmark

from stores.maze import cell_center
from stores.maze_env import maze_map


def _probe() -> ModuleType:
    return load_benchmark("probe_maze_synthetic")


GRID = np.asarray(maze_map("umaze"))  # 5 x 5; free: row 1 cols 1-3, (2, 3), row 3 cols 1-3


def test_wall_mask_knows_free_cells_walls_and_the_outside() -> None:
    probe = _probe()
    free = np.stack([cell_center((1, 1), GRID.shape), cell_center((2, 3), GRID.shape)])
    walls = np.stack([cell_center((2, 1), GRID.shape), cell_center((0, 0), GRID.shape), [9.0, 0.0]])
    assert not probe.wall_mask(free, GRID).any() and probe.wall_mask(walls, GRID).all()


def test_a_move_through_the_u_s_inner_wall_crosses_it_and_one_along_the_corridor_does_not() -> None:
    probe = _probe()
    a, b = cell_center((1, 1), GRID.shape), cell_center((3, 1), GRID.shape)  # both free, wall (2, 1) between
    c = cell_center((1, 3), GRID.shape)
    x0, x1 = np.stack([a, a]), np.stack([b, c])
    np.testing.assert_array_equal(probe.crosses_wall(x0, x1, GRID), [True, False])


def test_physics_report_counts_reward_labels_against_the_goal_rule() -> None:
    probe = _probe()
    goal = cell_center((1, 1), GRID.shape)
    obs = np.zeros((4, 4), dtype=np.float32)
    obs[:, :2] = goal
    nxt = obs.copy()
    nxt[2:, 0] += 0.6  # two moves leave the 0.45 goal disc
    rewards = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)  # rows 1 and 3 are mislabelled
    row = probe.physics_report(obs, nxt, rewards, GRID, goal)
    assert row["reward_mismatch"] == 0.5 and row["in_wall"] == 0.0 and row["transitions"] == 4
    assert abs(row["step_mean"] - 0.3) < 1e-6
