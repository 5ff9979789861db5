"""maze2d: the D4RL-style PointMaze envs, the grid and waypoint controller, the smoke recipe of every maze,
evaluation and scores, and the errors a user can hit (real gymnasium-robotics, MuJoCo and Minari)."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path as graph_distances

from augment.world.termination import has_rule, termination_fn
from baselines.evaluate import evaluate, make_env
from stores.datasets import load_dataset, resolve_source
from stores.errors import UserInputError
from stores.maze import (
    WaypointController,
    cell_center,
    cell_of,
    controller_returns,
    free_cells,
    maze_budget_for,
    shortest_path,
)
from stores.maze_env import MAZE_SPECS, maze_env_id, maze_map
from stores.names import parse_name
from stores.scores import normalized_score

MAZES = ("umaze", "medium", "large")


def test_envs_are_pointmaze_with_d4rl_goal_flat_obs_and_time_limits() -> None:
    for maze, limit in zip(MAZES, (300, 600, 800), strict=True):
        env = gym.make(maze_env_id(maze))
        core = env.unwrapped
        assert type(core).__mro__[1].__name__ == "PointMazeEnv"  # the real env, configured
        obs, _ = env.reset(seed=3)
        assert obs.shape == (4,) and env.observation_space.shape == (4,)
        assert env.spec.max_episode_steps == limit
        row, col = MAZE_SPECS[maze][1]
        np.testing.assert_allclose(core.goal, core.maze.cell_rowcol_to_xy(np.array([row, col])))
        # the start is a free cell's centre +- 0.1 (D4RL's reset noise), never the goal cell
        start = cell_of(obs[:2], (len(core.maze.maze_map), len(core.maze.maze_map[0])))
        assert start != (row, col) and core.maze.maze_map[start[0]][start[1]] == 0
        centre = cell_center(start, (len(core.maze.maze_map), len(core.maze.maze_map[0])))
        assert np.all(np.abs(obs[:2] - centre) <= 0.1 + 1e-9) and np.all(obs[2:] == 0)
        env.close()


def test_sparse_reward_against_the_fixed_goal_and_no_termination() -> None:
    env = gym.make(maze_env_id("umaze"))
    env.reset(seed=0)
    core = env.unwrapped
    goal = core.goal.copy()
    core.set_state(goal + np.array([0.3, 0.0]), np.zeros(2))  # 0.3 from the goal: inside 0.45
    _, r_in, term, trunc, _ = env.step(np.zeros(2))
    core.set_state(goal + np.array([0.0, -0.6]), np.zeros(2))  # 0.6 away: outside
    _, r_out, _, _, _ = env.step(np.zeros(2))
    assert (r_in, r_out, term, trunc) == (1.0, 0.0, False, False)
    steps, done = 2, False
    while not done:
        _, _, term, trunc, _ = env.step(np.zeros(2))
        steps += 1
        assert not term
        done = trunc
    assert steps == 300
    env.close()


def test_grid_geometry_matches_gymnasium_robotics() -> None:
    for maze in MAZES:
        env = gym.make(maze_env_id(maze))
        m = env.unwrapped.maze
        grid = maze_map(maze)
        shape = (len(grid), len(grid[0]))
        for cell in free_cells(grid):
            xy = cell_center(cell, shape)
            np.testing.assert_allclose(xy, m.cell_rowcol_to_xy(np.array(cell)))
            assert cell_of(xy + np.array([0.49, -0.49]), shape) == cell == tuple(m.cell_xy_to_rowcol(xy))
        env.close()


def test_shortest_paths_by_hand_and_against_scipy() -> None:
    u = maze_map("umaze")
    assert shortest_path(u, (3, 1), (1, 1)) == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    grid = maze_map("large")
    cells = free_cells(grid)
    index = {c: i for i, c in enumerate(cells)}
    rows, cols = [], []
    for (r, c), i in index.items():
        for nb in ((r + 1, c), (r, c + 1)):
            if nb in index:
                rows += [i, index[nb]]
                cols += [index[nb], i]
    dist = graph_distances(csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(cells),) * 2),
                           unweighted=True)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = (cells[i] for i in rng.integers(len(cells), size=2))
        path = shortest_path(grid, a, b)
        assert len(path) - 1 == dist[index[a], index[b]]
        assert all(abs(p[0] - q[0]) + abs(p[1] - q[1]) == 1 for p, q in zip(path, path[1:], strict=False))
    with pytest.raises(UserInputError, match="cannot be reached"):
        shortest_path([[0, 1, 0]], (0, 0), (0, 2))


def test_controller_pd_law_and_noise_free_controller_reaches_the_goal() -> None:
    grid = maze_map("umaze")
    ctl = WaypointController(grid, np.random.default_rng(0))
    start, vel = np.array([-1.0, -1.0]), np.array([0.2, -0.1])  # cell (3, 1); goal cell (1, 1)
    target = cell_center((1, 1), (5, 5))
    action, reached = ctl.act(start, vel, target)
    waypoint = ctl._waypoints[0]
    np.testing.assert_allclose(action, np.clip(10.0 * (waypoint - start) - vel, -1, 1), rtol=1e-6)
    assert not reached and np.all(np.abs(waypoint - cell_center((3, 2), (5, 5))) <= 0.1)
    returns = controller_returns("umaze", episodes=2, seed=0)
    assert np.all(returns > 100)  # at the goal for more than 100 of the 300 steps


@pytest.mark.parametrize("maze", MAZES)
def test_smoke_recipe_of_every_maze(maze: str) -> None:
    name = f"maze2d-{maze}"
    ds = load_dataset(name, profile="smoke", progress=False)
    assert ds.env_id == maze_env_id(maze) and ds.observation_size == 4 and ds.action_size == 2
    assert ds.num_transitions == maze_budget_for("smoke").size(maze)
    tr = ds.transitions
    assert not tr.terminals.any() and ds.episodes[-1].truncated[-1]
    assert all(len(ep) <= MAZE_SPECS[maze][2] for ep in ds.episodes)
    assert np.abs(tr.actions).max() <= 1.0
    # Segments are one continuing run: each starts where the previous one ended (no reset).
    for a, b in zip(ds.episodes, ds.episodes[1:], strict=False):
        np.testing.assert_array_equal(a.observations[-1], b.observations[0])
    # Rewards are the env's sparse reward against the fixed goal, recomputed here from the next states.
    goal = gym.make(ds.env_id).unwrapped.maze.cell_rowcol_to_xy(np.array(MAZE_SPECS[maze][1]))
    expected = (np.linalg.norm(tr.next_observations[:, :2] - goal, axis=1) <= 0.45).astype(np.float32)
    np.testing.assert_array_equal(tr.rewards, expected)
    recipe = ds.provenance["recipe"]
    assert recipe["recipe"] == "waypoint-controller" and recipe["behaviour_eval_episodes"] == 2
    score = normalized_score(recipe["behaviour_eval_return"], name)
    assert recipe["behaviour_eval_score"] == pytest.approx(score)
    assert recipe["data_score"] is None
    # the session cache keeps it: a second call reads it back
    assert resolve_source(name, profile="smoke").cached


def test_recipe_estimate_times_the_controller_in_a_fresh_process() -> None:
    # A fresh interpreter, so the first env of the process (imports, model compilation) is inside the
    # measurement, as in `augment datasets build`; it once made the estimate "~0 s, 500,000,000 steps/s".
    import subprocess

    code = "import stores.recipes as r; print(r._measure_maze('umaze'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    steps_per_s = 1.0 / float(out.stdout.strip().splitlines()[-1])
    assert 300 < steps_per_s < 200_000  # ~12,000/s measured on the development machine's loaded cores


def test_evaluation_and_scores_on_maze() -> None:
    class Still:
        def reset(self, n: int) -> None:
            pass

        def act(self, obs: np.ndarray) -> np.ndarray:
            assert obs.shape[1] == 4
            return np.zeros((obs.shape[0], 2), dtype=np.float32)

    result = evaluate(Still(), maze_env_id("umaze"), episodes=2, seed=0, score_name="maze2d-umaze")
    # the ball never moves from its start (never the goal cell): return 0, score 100*(0-23.85)/(161.86-23.85)
    assert list(result.returns) == [0.0, 0.0] and list(result.lengths) == [300, 300]
    assert result.normalized_mean == pytest.approx(100 * (0 - 23.85) / (161.86 - 23.85))
    # DyDiff's termination lookup: maze2d never terminates (a rule of its own, no warning)
    assert has_rule(maze_env_id("large"))
    assert not termination_fn(maze_env_id("medium"))(np.zeros((2, 4))).any()


def test_maze_names_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_name("maze2d-umaze-v1").name == parse_name("umaze").name == "maze2d-umaze"
    assert parse_name("maze2d-l").env_id == maze_env_id("large")
    with pytest.raises(UserInputError, match="unknown maze 'maze2d-medum'; did you mean 'maze2d-medium'"):
        load_dataset("maze2d-medum")
    with pytest.raises(UserInputError, match="did you mean 'maze2d-large'"):
        parse_name("maze2d-lrge")
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # import now raises ImportError
    for call in (lambda: make_env(maze_env_id("umaze")), lambda: maze_map("umaze")):
        with pytest.raises(UserInputError, match=r"pip install -e \"\.\[maze\]\""):
            call()


@pytest.mark.slow
def test_iql_with_dydiff_runs_on_maze2d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The learner, DyDiff (maze2d settings M = 1, eta 0.6) and the termination rule on maze2d-umaze."""
    import json

    from cli import main

    load_dataset("maze2d-umaze", profile="smoke", progress=False)
    out = tmp_path / "run"
    try:
        main(["dydiff", "--policy", "iql", "--dataset", "maze2d-umaze", "--profile", "smoke", "--steps", "60",
              "--out", str(out), "--quiet"])
    except SystemExit as exc:
        assert not exc.code
    config = json.loads((out / "config.json").read_text())
    text = json.dumps(config)
    assert '"eta": 0.6' in text and '"iterations": 1' in text
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 60


def test_diagnose_simulator_replays_maze_states() -> None:
    """`augment diagnose` puts the simulator into an observed state: maze2d observations are the full
    state (x, y, vx, vy), so setting one and stepping matches stepping the env from that state."""
    from augment.diagnose import _Simulator

    env = gym.make(maze_env_id("medium"))
    obs, _ = env.reset(seed=1)
    for _ in range(5):
        obs, *_ = env.step(np.array([0.7, -0.3]))
    expected, *_ = env.step(np.array([-0.2, 0.9]))
    sim = _Simulator(maze_env_id("medium"))
    try:
        np.testing.assert_array_equal(sim.set_observation(obs), obs.astype(np.float32))
        got, terminated = sim.step(np.array([-0.2, 0.9]))
    finally:
        sim.close()
        env.close()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert terminated is False
