"""The registry of dataset names: canonical names, aliases, and what each name means.

Canonical names are D4RL's, without version:

* locomotion: ``{hopper,halfcheetah,walker2d}-{random,medium,medium-replay,expert,medium-expert}``.
  Aliases shorten the kind: ``r`` random, ``m``/``md`` medium, ``mr`` medium-replay, ``e`` expert,
  ``me`` medium-expert (``hopper-mr``); ``walker`` / ``cheetah`` for the families;
* maze2d: ``maze2d-{umaze,medium,large}`` (aliases ``maze2d-u`` / ``umaze``, ``maze2d-med``, ``maze2d-l``,
  ``pointmaze-umaze``, ...).

A trailing D4RL version (``-v2``, ``maze2d-umaze-v1``) and underscores are accepted too
(``hopper_medium_replay-v2``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import stores.maze_env  # noqa: F401  (registers the maze2d env ids with Gymnasium)
from stores.errors import UserInputError, did_you_mean

FAMILIES: tuple[str, ...] = ("hopper", "halfcheetah", "walker2d")
KINDS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")
MAZE_FAMILY = "maze2d"
MAZES: tuple[str, ...] = ("umaze", "medium", "large")

# Gymnasium env to build and evaluate in (REFERENCE §3: Walker2d-v5 changed friction, so v4).
ENV_IDS: dict[str, str] = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v4"}
# The D4RL-style PointMaze envs of stores.maze_env (fixed goal, flat (x, y, vx, vy) observations).
MAZE_ENV_IDS: dict[str, str] = {
    "umaze": "diffusion-augment/PointMaze_UMaze-v3",
    "medium": "diffusion-augment/PointMaze_Medium-v3",
    "large": "diffusion-augment/PointMaze_Large-v3",
}

KIND_ALIASES: dict[str, str] = {
    "r": "random", "m": "medium", "md": "medium", "mr": "medium-replay", "e": "expert",
    "me": "medium-expert", "random": "random", "medium": "medium", "medium-replay": "medium-replay",
    "expert": "expert", "medium-expert": "medium-expert",
}
FAMILY_ALIASES: dict[str, str] = {"hopper": "hopper", "halfcheetah": "halfcheetah", "cheetah": "halfcheetah",
                                  "walker2d": "walker2d", "walker": "walker2d"}
MAZE_ALIASES: dict[str, str] = {"umaze": "umaze", "u": "umaze", "medium": "medium", "med": "medium",
                                "large": "large", "l": "large"}
_MAZE_PREFIXES: tuple[str, ...] = ("maze2d", "maze", "pointmaze")

LOCOMOTION_NAMES: tuple[str, ...] = tuple(f"{f}-{k}" for f in FAMILIES for k in KINDS)
MAZE_NAMES: tuple[str, ...] = tuple(f"{MAZE_FAMILY}-{m}" for m in MAZES)
NAMES: tuple[str, ...] = LOCOMOTION_NAMES + MAZE_NAMES


@dataclass(frozen=True)
class DatasetName:
    """A parsed canonical name.

    Locomotion: ``family`` (hopper), ``kind`` (medium-replay). Maze2d: ``family`` ``maze2d``, ``kind`` the
    maze (umaze / medium / large). ``env_id`` is the Gymnasium env to build and evaluate in.
    """

    family: str
    kind: str

    @property
    def name(self) -> str:
        return f"{self.family}-{self.kind}"

    @property
    def is_maze(self) -> bool:
        return self.family == MAZE_FAMILY

    @property
    def env_id(self) -> str:
        return MAZE_ENV_IDS[self.kind] if self.is_maze else ENV_IDS[self.family]

    @property
    def score_name(self) -> str:
        """Key of D4RL's reference returns (:mod:`stores.scores`): ``hopper`` or ``maze2d-umaze``."""
        return self.name if self.is_maze else self.family

    @property
    def run_key(self) -> str:
        """What one recipe run builds: a locomotion family (all its kinds) or one maze."""
        return self.name if self.is_maze else self.family

    @property
    def d4rl_filename(self) -> str:
        """The usual D4RL file name: ``hopper_medium_replay-v2.hdf5``, ``maze2d-umaze-sparse-v1.hdf5``."""
        if self.is_maze:
            return f"{self.name}-sparse-v1.hdf5"
        return f"{self.family}_{self.kind.replace('-', '_')}-v2.hdf5"

    @property
    def minari_id(self) -> str | None:
        """The Minari remote/local id of the same data, or None (Minari has no medium-replay/-expert)."""
        if self.is_maze:
            return f"D4RL/pointmaze/{self.kind}-v2"
        if self.kind in ("medium", "expert"):
            return f"mujoco/{self.family}/{self.kind}-v0"
        return None


def all_aliases() -> dict[str, str]:
    """Every accepted short spelling -> canonical name (``hopper-mr`` -> ``hopper-medium-replay``)."""
    out: dict[str, str] = {}
    for fam_alias, fam in FAMILY_ALIASES.items():
        for kind_alias, kind in KIND_ALIASES.items():
            out[f"{fam_alias}-{kind_alias}"] = f"{fam}-{kind}"
    for prefix in _MAZE_PREFIXES:
        for maze_alias, maze in MAZE_ALIASES.items():
            out[f"{prefix}-{maze_alias}"] = f"{MAZE_FAMILY}-{maze}"
    out["umaze"] = f"{MAZE_FAMILY}-umaze"
    return out


def _normalise(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    key = re.sub(r"-v\d+$", "", key)
    return re.sub(r"-(sparse)$", "", key) if key.startswith(_MAZE_PREFIXES) else key


def _unknown_maze(name: str, key: str) -> UserInputError:
    """An unknown maze name: always suggest the closest maze (there are only three)."""
    size = key.split("-", 1)[1] if "-" in key else key
    close = difflib.get_close_matches(size, list(MAZES), n=1, cutoff=0.0)
    guess = f"{MAZE_FAMILY}-{close[0]}" if close else MAZE_NAMES[0]
    return UserInputError(f"unknown maze '{name}'; did you mean '{guess}'? the mazes are "
                          f"{', '.join(MAZE_NAMES)} (D4RL's U-Maze, Medium and Large)")


def parse_name(name: str) -> DatasetName:
    """Parse a name or alias into a :class:`DatasetName`; :class:`UserInputError` with did-you-mean."""
    key = _normalise(name)
    aliases = all_aliases()
    canonical = aliases.get(key)
    if canonical is None:
        if key.startswith(_MAZE_PREFIXES):
            raise _unknown_maze(name, key)
        close = difflib.get_close_matches(key, list(NAMES) + sorted(set(aliases) - set(NAMES)), n=1,
                                          cutoff=0.6)
        if close:  # suggest the canonical name even when the closest spelling is an alias
            raise UserInputError(f"unknown name '{name}'; did you mean '{aliases[close[0]]}'? "
                                 "see `augment datasets list`")
        raise UserInputError(did_you_mean(name, NAMES, hint="see `augment datasets list`"))
    family, kind = canonical.split("-", 1)
    return DatasetName(family=family, kind=kind)


def canonical_name(name: str) -> str:
    """``hopper-mr`` -> ``hopper-medium-replay``; :class:`UserInputError` with did-you-mean when unknown."""
    return parse_name(name).name
