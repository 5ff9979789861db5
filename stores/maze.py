"""The maze2d recipe: a waypoint controller over the maze grid drives the point mass to random goals.

D4RL's maze2d data (``scripts/generation/generate_maze2d_datasets.py`` of D4RL, read for understanding)
came from one long run of a controller in the maze: a random goal cell is drawn, the shortest path over the
grid's free cells gives one waypoint per cell, a PD law pushes the ball to the next waypoint, Gaussian noise
(std 0.5) is added to every action, and when the goal is reached a new random goal is drawn *without
resetting the ball*. Rewards were then relabelled against the evaluation env's fixed goal. This module does
the same in the D4RL-style PointMaze envs of :mod:`stores.maze_env`:

* grid: the gymnasium-robotics map (1 = wall); cell (row, col) has centre
  ``x = col + 0.5 - W/2``, ``y = H/2 - row - 0.5`` (:func:`cell_center`, W x H cells of size 1);
* path: breadth-first search over 4-connected free cells (:func:`shortest_path`; D4RL ran Q-iteration
  on the same grid, which gives a shortest path too); the waypoints are the centres of the cells after the
  current one, each jittered by U(-jitter, jitter) per axis, the last one being the goal itself;
* control (Eq. 1):  ``a = clip(p_gain * (w - x) + d_gain * v, -1, 1)`` with D4RL's p_gain 10, d_gain -1,
  x the position, v the velocity and w the current waypoint; the waypoint advances when
  ``|w - x| < solve_thresh`` (0.1); the goal counts as reached at ``|g - x| < solve_thresh``;
* data action: ``clip(a + 0.5 * N(0, I), -1, 1)``;
* goals: a uniformly chosen free cell plus U(-0.1, 0.1) per axis (D4RL's ``set_target``);
* segments: the run is cut into episodes when the goal is reached or after the env's time limit
  (300 / 600 / 800 steps), all marked truncated, none terminated (the maze never ends; D4RL stored these
  cuts as ``terminals``, which DyDiff and most readers treat as time-outs);
* reward: the env's own sparse reward against the fixed evaluation goal (1 within 0.45), so data and
  evaluation agree.

The behaviour policy's score is that of the same controller without noise, aimed at the fixed goal, over
``eval_episodes`` evaluation episodes (D4RL's maze2d "expert" reference returns came from this controller).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from augment.profiles import by_profile
from stores.errors import UserInputError
from stores.maze_env import MAZE_SPECS, maze_env_id, maze_map
from stores.schema import Episode

Cell = tuple[int, int]


# --------------------------------------------------------------------------- the grid


def free_cells(grid: list[list[int]]) -> list[Cell]:
    """Every free (0) cell (row, col) of ``grid``, row-major."""
    return [(r, c) for r, row in enumerate(grid) for c, v in enumerate(row) if v == 0]


def cell_center(cell: Cell, shape: tuple[int, int]) -> np.ndarray:
    """(2,) x, y of the centre of ``cell`` in a maze of ``shape`` = (rows H, cols W), cells of size 1,
    centred on the origin: ``x = col + 0.5 - W/2``, ``y = H/2 - row - 0.5``."""
    rows, cols = shape
    return np.array([cell[1] + 0.5 - cols / 2.0, rows / 2.0 - cell[0] - 0.5], dtype=np.float64)


def cells_of(xy: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) int64 rows and cols of the cells holding the points ``xy`` (N, 2) (inverse of
    :func:`cell_center`; points off the grid give indices outside ``[0, H) x [0, W)``)."""
    rows, cols = shape
    xy = np.asarray(xy, dtype=np.float64)
    return (np.floor(rows / 2.0 - xy[:, 1]).astype(np.int64),
            np.floor(xy[:, 0] + cols / 2.0).astype(np.int64))


def cell_of(xy: np.ndarray, shape: tuple[int, int]) -> Cell:
    """The (row, col) of the cell holding the point ``xy`` (inverse of :func:`cell_center`)."""
    r, c = cells_of(np.asarray(xy)[None, :2], shape)
    return int(r[0]), int(c[0])


def shortest_path(grid: list[list[int]], start: Cell, goal: Cell) -> list[Cell]:
    """Cells from ``start`` to ``goal`` inclusive along a shortest 4-connected path of free cells.

    Breadth-first search; neighbours are tried in the order up, down, left, right, so the path is unique
    for a given grid. Raises :class:`UserInputError` when ``goal`` cannot be reached.
    """
    rows, cols = len(grid), len(grid[0])
    parent: dict[Cell, Cell | None] = {start: None}
    queue: deque[Cell] = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        r, c = cell
        for nxt in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nxt[0] < rows and 0 <= nxt[1] < cols and grid[nxt[0]][nxt[1]] == 0 and nxt not in parent:
                parent[nxt] = cell
                queue.append(nxt)
    if goal not in parent:
        raise UserInputError(f"cell {goal} cannot be reached from {start} in this maze")
    path = [goal]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])  # type: ignore[arg-type]
    return path[::-1]


def nearest_free_cell(grid: list[list[int]], xy: np.ndarray) -> Cell:
    """The cell under ``xy`` when free, else the free cell whose centre is closest."""
    shape = (len(grid), len(grid[0]))
    r, c = cell_of(xy, shape)
    if 0 <= r < shape[0] and 0 <= c < shape[1] and grid[r][c] == 0:
        return r, c
    cells = free_cells(grid)
    dists = [float(np.linalg.norm(cell_center(cell, shape) - xy)) for cell in cells]
    return cells[int(np.argmin(dists))]


# --------------------------------------------------------------------------- the controller


@dataclass(frozen=True)
class ControllerConfig:
    """Waypoint controller gains (D4RL's): Eq. (1) of the module docstring. solve_thresh and jitter in
    maze cells (cell = 1 x 1)."""

    p_gain: float = 10.0
    d_gain: float = -1.0
    solve_thresh: float = 0.1
    jitter: float = 0.1


class WaypointController:
    """Shortest path over the grid + PD control to the next waypoint (module docstring, Eq. 1).

    ``act(position (2,), velocity (2,), target (2,))`` -> (action (2,) in [-1, 1], reached: bool). A new
    target (or the first call) replans from the current cell. ``rng`` draws the waypoint jitter.
    """

    def __init__(self, grid: list[list[int]], rng: np.random.Generator,
                 config: ControllerConfig | None = None) -> None:
        self.grid = grid
        self.shape = (len(grid), len(grid[0]))
        self.rng = rng
        self.config = config or ControllerConfig()
        self._target: np.ndarray | None = None
        self._waypoints: list[np.ndarray] = []
        self._index = 0

    def plan(self, position: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
        """Waypoints from ``position`` to ``target``: jittered centres of the path's cells after the current
        one, then ``target`` itself."""
        start = nearest_free_cell(self.grid, position)
        goal = nearest_free_cell(self.grid, target)
        cells = shortest_path(self.grid, start, goal)[1:]
        jitter = self.config.jitter
        points = [cell_center(cell, self.shape) + self.rng.uniform(-jitter, jitter, size=2)
                  for cell in cells[:-1]]
        points.append(np.asarray(target, dtype=np.float64).copy())
        self._target = np.asarray(target, dtype=np.float64).copy()
        self._waypoints = points
        self._index = 0
        return points

    def act(self, position: np.ndarray, velocity: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, bool]:
        cfg = self.config
        position = np.asarray(position, dtype=np.float64)
        if self._target is None or not np.allclose(self._target, target):
            self.plan(position, target)
        while (self._index < len(self._waypoints) - 1
               and np.linalg.norm(self._waypoints[self._index] - position) < cfg.solve_thresh):
            self._index += 1
        waypoint = self._waypoints[self._index]
        action = np.clip(cfg.p_gain * (waypoint - position) + cfg.d_gain * np.asarray(velocity), -1.0, 1.0)
        reached = bool(np.linalg.norm(np.asarray(target) - position) < cfg.solve_thresh)
        return action.astype(np.float32), reached


# --------------------------------------------------------------------------- budgets and the recipe


@dataclass(frozen=True)
class MazeBudget:
    """Size of a maze2d recipe: ``transitions`` per maze, ``action_noise`` (std of the Gaussian added to
    the controller's actions), ``eval_episodes`` for the behaviour score."""

    transitions: dict[str, int]
    eval_episodes: int
    action_noise: float = 0.5

    def size(self, maze: str) -> int:
        return int(self.transitions[maze])


def maze_budget_for(profile: str) -> MazeBudget:
    """``smoke``: 2,000 transitions per maze; ``cpu``: a fifth of D4RL's; ``paper``: D4RL's 1M / 2M / 4M."""
    return by_profile(
        profile,
        smoke=MazeBudget(transitions={"umaze": 2_000, "medium": 2_000, "large": 2_000}, eval_episodes=2),
        cpu=MazeBudget(transitions={"umaze": 200_000, "medium": 400_000, "large": 800_000}, eval_episodes=10),
        paper=MazeBudget(transitions={"umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000},
                         eval_episodes=100),
    )


def random_goal(grid: list[list[int]], rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    """A uniformly chosen free cell's centre plus U(-noise, noise) per axis (D4RL's ``set_target``)."""
    cells = free_cells(grid)
    cell = cells[int(rng.integers(len(cells)))]
    return cell_center(cell, (len(grid), len(grid[0]))) + rng.uniform(-noise, noise, size=2)


def _make(maze: str) -> Any:
    import gymnasium as gym

    from stores.sources import install_mujoco_warning_handler

    install_mujoco_warning_handler()  # MuJoCo's warnings to the log, not MUJOCO_LOG.TXT in the cwd
    return gym.make(maze_env_id(maze))


def collect_maze_data(maze: str, *, transitions: int, seed: int, action_noise: float = 0.5,
                      progress: bool = True, config: ControllerConfig | None = None) -> list[Episode]:
    """One continuous noisy-controller run of ``transitions`` steps in ``maze``, cut into segments.

    Returns episodes (observations (T+1, 4) float32 = x, y, vx, vy; actions (T, 2); sparse rewards
    against the fixed goal), each ending truncated; see the module docstring.
    """
    from tqdm.auto import tqdm

    if maze not in MAZE_SPECS:
        raise UserInputError(f"unknown maze '{maze}'; the mazes are {', '.join(MAZE_SPECS)}")
    limit = MAZE_SPECS[maze][2]
    grid = maze_map(maze)
    rng = np.random.default_rng(seed)
    controller = WaypointController(grid, rng, config)
    env = _make(maze)
    core = env.unwrapped
    episodes: list[Episode] = []
    try:
        obs = np.asarray(env.reset(seed=seed)[0], dtype=np.float64)
        target = random_goal(grid, rng)
        seg_obs, seg_act, seg_rew = [obs.astype(np.float32)], [], []
        with tqdm(total=transitions, desc=f"maze2d-{maze} controller", unit="step", disable=not progress,
                  leave=False) as bar:
            for t in range(transitions):
                action, _ = controller.act(obs[:2], obs[2:], target)
                action = np.clip(action + action_noise * rng.standard_normal(2), -1.0, 1.0).astype(np.float32)
                obs, reward, _, _, _ = core.step(action)  # unwrapped: no time limit, no reset (D4RL)
                obs = np.asarray(obs, dtype=np.float64)
                seg_obs.append(obs.astype(np.float32))
                seg_act.append(action)
                seg_rew.append(float(reward))
                reached = bool(np.linalg.norm(target - obs[:2]) < controller.config.solve_thresh)
                if reached or len(seg_act) >= limit or t == transitions - 1:
                    episodes.append(_segment(seg_obs, seg_act, seg_rew))
                    seg_obs, seg_act, seg_rew = [obs.astype(np.float32)], [], []
                    target = random_goal(grid, rng)  # D4RL: a new goal after every cut, no reset
                if (t + 1) % 1000 == 0 or t == transitions - 1:
                    bar.update((t + 1) - bar.n)
    finally:
        env.close()
    return episodes


def _segment(obs: list[np.ndarray], act: list[np.ndarray], rew: list[float]) -> Episode:
    t = len(act)
    truncated = np.zeros(t, dtype=bool)
    truncated[-1] = True
    return Episode(observations=np.stack(obs), actions=np.stack(act).astype(np.float32),
                   rewards=np.asarray(rew, dtype=np.float32), terminated=np.zeros(t, dtype=bool),
                   truncated=truncated)


def controller_returns(maze: str, *, episodes: int, seed: int,
                       config: ControllerConfig | None = None) -> np.ndarray:
    """(episodes,) returns of the noise-free controller aimed at the fixed goal, in the evaluation env
    (time limit included); episode k resets with seed ``seed + k``."""
    grid = maze_map(maze)
    returns = np.zeros(episodes, dtype=np.float64)
    env = _make(maze)
    try:
        goal = np.asarray(env.unwrapped.fixed_goal, dtype=np.float64)
        for k in range(episodes):
            controller = WaypointController(grid, np.random.default_rng(seed + k), config)
            obs, _ = env.reset(seed=seed + k)
            done = False
            while not done:
                action, _ = controller.act(obs[:2], obs[2:], goal)
                obs, reward, terminated, truncated, _ = env.step(action)
                returns[k] += float(reward)
                done = terminated or truncated
    finally:
        env.close()
    return returns


def build_maze_episodes(maze: str, *, profile: str, seed: int,
                        progress: bool) -> tuple[list[Episode], dict[str, Any]]:
    """The maze recipe's episodes and its metadata (behaviour score, sizes, timings)."""
    from stores.scores import normalized_score

    budget = maze_budget_for(profile)
    started = time.perf_counter()
    episodes = collect_maze_data(maze, transitions=budget.size(maze), seed=seed * 7919 + 500_000,
                                 action_noise=budget.action_noise, progress=progress)
    collect_s = time.perf_counter() - started
    returns = controller_returns(maze, episodes=budget.eval_episodes, seed=seed * 7919 + 600_000)
    name = f"maze2d-{maze}"
    md = {
        "behaviour": "waypoint controller (BFS shortest path + PD, D4RL gains) to random goals, "
                     f"Gaussian action noise std {budget.action_noise}",
        "controller": {"p_gain": 10.0, "d_gain": -1.0, "solve_thresh": 0.1, "waypoint_jitter": 0.1},
        "maze_budget": {"transitions": budget.size(maze), "eval_episodes": budget.eval_episodes,
                        "action_noise": budget.action_noise},
        "time_limit": MAZE_SPECS[maze][2], "goal_cell": list(MAZE_SPECS[maze][1]),
        "env_steps": budget.size(maze),
        "threshold_reached": None, "stopped_by": "size",
        "behaviour_eval_return": float(returns.mean()), "behaviour_eval_std": float(returns.std()),
        "behaviour_eval_episodes": int(returns.size),
        "behaviour_eval_score": float(normalized_score(float(returns.mean()), name)),
        "behaviour_eval_policy": "the controller without noise, aimed at the fixed evaluation goal",
        "steps_per_s": budget.size(maze) / max(collect_s, 1e-9),
        "wall_time_s": time.perf_counter() - started,
    }
    return episodes, md
