"""The registry of dataset names: canonical names, aliases, and what each name means.

Canonical names are D4RL's, without version: ``{hopper,halfcheetah,walker2d}-{random,medium,medium-replay,
expert,medium-expert}``. Aliases shorten the kind: ``r`` random, ``m``/``md`` medium, ``mr`` medium-replay,
``e`` expert, ``me`` medium-expert (``hopper-mr``); a trailing D4RL version (``-v2``) and underscores are
accepted too (``hopper_medium_replay-v2``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from stores.errors import UserInputError, did_you_mean

FAMILIES: tuple[str, ...] = ("hopper", "halfcheetah", "walker2d")
KINDS: tuple[str, ...] = ("random", "medium", "medium-replay", "expert", "medium-expert")

# Gymnasium env to build and evaluate in (REFERENCE §3: Walker2d-v5 changed friction, so v4).
ENV_IDS: dict[str, str] = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v4"}

KIND_ALIASES: dict[str, str] = {
    "r": "random", "m": "medium", "md": "medium", "mr": "medium-replay", "e": "expert",
    "me": "medium-expert", "random": "random", "medium": "medium", "medium-replay": "medium-replay",
    "expert": "expert", "medium-expert": "medium-expert",
}
FAMILY_ALIASES: dict[str, str] = {"hopper": "hopper", "halfcheetah": "halfcheetah", "cheetah": "halfcheetah",
                                  "walker2d": "walker2d", "walker": "walker2d"}

NAMES: tuple[str, ...] = tuple(f"{f}-{k}" for f in FAMILIES for k in KINDS)


@dataclass(frozen=True)
class DatasetName:
    """A parsed canonical name: ``family`` (hopper), ``kind`` (medium-replay), ``env_id`` (Hopper-v5)."""

    family: str
    kind: str

    @property
    def name(self) -> str:
        return f"{self.family}-{self.kind}"

    @property
    def env_id(self) -> str:
        return ENV_IDS[self.family]

    @property
    def d4rl_filename(self) -> str:
        """The usual D4RL cache file name, e.g. ``hopper_medium_replay-v2.hdf5``."""
        return f"{self.family}_{self.kind.replace('-', '_')}-v2.hdf5"

    @property
    def minari_id(self) -> str | None:
        """The Minari remote/local id of the same data, or None (Minari has no medium-replay/-expert)."""
        if self.kind in ("medium", "expert"):
            return f"mujoco/{self.family}/{self.kind}-v0"
        return None


def all_aliases() -> dict[str, str]:
    """Every accepted short spelling -> canonical name (``hopper-mr`` -> ``hopper-medium-replay``)."""
    out: dict[str, str] = {}
    for fam_alias, fam in FAMILY_ALIASES.items():
        for kind_alias, kind in KIND_ALIASES.items():
            out[f"{fam_alias}-{kind_alias}"] = f"{fam}-{kind}"
    return out


def parse_name(name: str) -> DatasetName:
    """Parse a name or alias into a :class:`DatasetName`; :class:`UserInputError` with did-you-mean."""
    key = name.strip().lower().replace("_", "-")
    key = re.sub(r"-v\d+$", "", key)
    aliases = all_aliases()
    canonical = aliases.get(key)
    if canonical is None:
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
