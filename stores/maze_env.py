"""D4RL-style maze2d environments: gymnasium-robotics' PointMaze with D4RL's fixed goal and flat observations.

The envs are the real ``gymnasium_robotics.envs.maze.point_maze.PointMazeEnv`` (the same point mass,
MuJoCo model and maze maps D4RL's maze2d was ported from), configured the way D4RL's ``maze2d-*-v1``
evaluation envs were:

* **fixed goal**: the centre of D4RL's goal cell (row, col) = U-Maze (1, 1), Medium (6, 6), Large (7, 9)
  of the gymnasium-robotics maps, without the ±0.25 goal noise gymnasium-robotics adds;
* **start**: a uniformly chosen free cell (never the goal cell) plus uniform noise in ±0.1 per axis
  (D4RL's reset noise; gymnasium-robotics' default is ±0.25), zero velocity;
* **continuing task**: never terminates; truncated by the time limit, 300 / 600 / 800 steps (D4RL's);
* **sparse reward**: 1 while ``|(x, y) - goal| <= 0.45`` (gymnasium-robotics' radius; D4RL used 0.5);
* **observation**: the flat float64 vector ``(x, y, vx, vy)`` = (qpos, qvel) of the point, D4RL's layout
  (the goal is fixed, so it is not observed). The dict observation of gymnasium-robotics is flattened
  here, in the env, so data and evaluation see exactly the same vector.

Ids: ``diffusion-augment/PointMaze_{UMaze,Medium,Large}-v3`` (``v3`` is the PointMaze version underneath).
They are registered with Gymnasium when this module is imported (string entry points: registering
imports nothing heavy); making one imports gymnasium-robotics and fails with one line naming the extra
to install when it is missing. Coordinates are gymnasium-robotics' (maze centred on the origin, x to the
right, y up, one cell = 1), not D4RL's (x = row, y = column), so D4RL's own maze2d files do not evaluate in
these envs without a change of coordinates.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from stores.errors import UserInputError

MAZE_EXTRA_HINT = ("maze2d needs gymnasium-robotics: install the maze extra with "
                   "`python3 -m pip install -e \".[maze]\"` (it pins gymnasium-robotics==1.3.1; "
                   "see docs/datasets.md, 'maze2d')")

#: gymnasium-robotics map name, D4RL goal cell (row, col), D4RL time limit, per maze.
MAZE_SPECS: dict[str, tuple[str, tuple[int, int], int]] = {
    "umaze": ("U_MAZE", (1, 1), 300),
    "medium": ("MEDIUM_MAZE", (6, 6), 600),
    "large": ("LARGE_MAZE", (7, 9), 800),
}
ENV_NAMES: dict[str, str] = {"umaze": "PointMaze_UMaze", "medium": "PointMaze_Medium",
                             "large": "PointMaze_Large"}
NAMESPACE = "diffusion-augment"
RESET_NOISE = 0.1  # D4RL's uniform reset noise per axis (cells are 1 x 1)
GOAL_RADIUS = 0.45  # the sparse reward's radius around the fixed goal (gymnasium-robotics'; D4RL used 0.5)


def maze_env_id(maze: str) -> str:
    """``umaze`` -> ``diffusion-augment/PointMaze_UMaze-v3``."""
    return f"{NAMESPACE}/{ENV_NAMES[maze]}-v3"


def maze_of_env_id(env_id: str) -> str | None:
    """The maze (umaze / medium / large) of one of these env ids, else None."""
    for maze in MAZE_SPECS:
        if env_id == maze_env_id(maze):
            return maze
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """gymnasium-robotics prints an Adroit notice on import; keep it off the user's terminal."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def require_gymnasium_robotics() -> Any:
    """Import gymnasium-robotics (and register its envs); :class:`UserInputError` naming the extra."""
    try:
        with _quiet():
            import gymnasium as gym
            import gymnasium_robotics
            gym.register_envs(gymnasium_robotics)
    except ImportError as exc:
        raise UserInputError(f"{MAZE_EXTRA_HINT} ({exc})") from exc
    return gymnasium_robotics


def maze_map(maze: str) -> list[list[int]]:
    """The gymnasium-robotics grid of a maze (1 = wall, 0 = free), rows top to bottom; a fresh copy."""
    if maze not in MAZE_SPECS:
        raise UserInputError(f"unknown maze '{maze}'; the mazes are {', '.join(MAZE_SPECS)}")
    require_gymnasium_robotics()
    from gymnasium_robotics.envs.maze import maps

    return [[int(c) for c in row] for row in copy.deepcopy(getattr(maps, MAZE_SPECS[maze][0]))]


_ENV_CLASS: Any = None


def _env_class() -> Any:
    """The D4RL-style subclass of PointMazeEnv (defined on first use, after the guarded import)."""
    global _ENV_CLASS
    if _ENV_CLASS is not None:
        return _ENV_CLASS
    require_gymnasium_robotics()
    from gymnasium import spaces
    from gymnasium_robotics.envs.maze.maps import GOAL
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

    class D4RLStylePointMaze(PointMazeEnv):  # type: ignore[misc, valid-type]
        """PointMaze with D4RL's fixed goal, reset noise and flat (x, y, vx, vy) observations."""

        def __init__(self, maze: str = "umaze", render_mode: str | None = None,
                     reward_type: str = "sparse", **kwargs: Any) -> None:
            grid: list[list[Any]] = maze_map(maze)
            row, col = MAZE_SPECS[maze][1]
            grid[row][col] = GOAL
            with _quiet():
                super().__init__(maze_map=grid, render_mode=render_mode, reward_type=reward_type,
                                 continuing_task=True, reset_target=False, **kwargs)
            self.maze_name = maze
            self.goal_cell = (row, col)
            self.fixed_goal = np.asarray(self.maze.cell_rowcol_to_xy(np.array([row, col])), dtype=np.float64)
            self.position_noise_range = RESET_NOISE
            self._goal_space = self.observation_space  # GoalEnv.reset insists on its Dict space
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float64)

        def _get_obs(self, point_obs: np.ndarray | None = None) -> Any:
            """Without an argument: the flat observation of the current state (qpos, qvel); with one:
            PointMazeEnv's own dict (used inside its reset/step)."""
            if point_obs is None:
                return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float64)
            return super()._get_obs(point_obs)

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
                  ) -> tuple[np.ndarray, dict[str, Any]]:
            flat_space, self.observation_space = self.observation_space, self._goal_space
            try:
                obs, info = super().reset(seed=seed, options=options)
            finally:
                self.observation_space = flat_space
            self.goal = self.fixed_goal.copy()
            self.update_target_site_pos()
            info["success"] = bool(np.linalg.norm(obs["achieved_goal"] - self.goal) <= GOAL_RADIUS)
            return np.asarray(obs["observation"], dtype=np.float64), info

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
            obs, reward, terminated, truncated, info = super().step(action)
            flat = np.asarray(obs["observation"], dtype=np.float64)
            return flat, float(reward), terminated, truncated, info

        def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> None:
            """Put the point at ``qpos`` (x, y) with velocity ``qvel`` (vx, vy)."""
            self.point_env.set_state(np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64))

    _ENV_CLASS = D4RLStylePointMaze
    return _ENV_CLASS


def make_d4rl_style_maze(maze: str = "umaze", **kwargs: Any) -> Any:
    """Gymnasium entry point of the ``diffusion-augment/PointMaze_*-v3`` ids."""
    return _env_class()(maze=maze, **kwargs)


def register_maze_envs() -> None:
    """Register the three ids with Gymnasium (idempotent; imports nothing heavy)."""
    import gymnasium as gym

    for maze, (_, _, limit) in MAZE_SPECS.items():
        env_id = maze_env_id(maze)
        if env_id in gym.registry:
            continue
        gym.register(id=env_id, entry_point="stores.maze_env:make_d4rl_style_maze", kwargs={"maze": maze},
                     max_episode_steps=limit)


register_maze_envs()
