"""Replay store schema: format constants, the row columns and their dtypes, reserved and provenance
attributes, :class:`StoreSchema`, and the JSON/time helpers of the group attributes.

The on-disk layout is specified in ``docs/store-format.md``; :mod:`stores.replay` re-exports every name.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Any

from stores.errors import UserInputError
from stores.guards import STORE_FORMAT, STORE_LOCK

FORMAT_NAME = STORE_FORMAT  # "augment-replay-store"
FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 32768
LOCK_NAME = STORE_LOCK  # ".writer.lock"

# Column name -> (dtype, kind of trailing dimension: "obs", "act" or None for 1-D).
TRANSITION_COLUMNS: dict[str, tuple[str, str | None]] = {
    "observations": ("float32", "obs"),
    "actions": ("float32", "act"),
    "rewards": ("float32", None),
    "next_observations": ("float32", "obs"),
    "terminals": ("bool", None),
    "timeouts": ("bool", None),
}
PROVENANCE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "generator": ("int16", None),
    "round": ("int32", None),
    "learner_step": ("int64", None),
    "filter_score": ("float32", None),
    "start_index": ("int64", None),
    "trajectory": ("int64", None),
}
ROW_COLUMNS: dict[str, tuple[str, str | None]] = {**TRANSITION_COLUMNS, **PROVENANCE_COLUMNS}
BOUNDARY_ARRAY = "trajectory_starts"
FLOAT_COLUMNS = ("observations", "actions", "rewards", "next_observations")

# Attributes the store manages itself; ``update_attrs`` refuses them.
RESERVED_ATTRS = frozenset({
    "format", "format_version", "schema", "committed_rows", "committed_trajectories", "generators",
    "created", "updated",
})
# Well-known provenance attributes (all optional, JSON-native; None when unknown).
PROVENANCE_ATTRS = ("source_dataset", "source_hash", "env_id", "generator_name", "generator_config",
                    "seed", "normalization")



def _now() -> str:
    """Current UTC time as ISO-8601 text with a trailing Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_json(value: Any, what: str) -> None:
    """Raise :class:`UserInputError` unless ``value`` is JSON-native (dict/list/str/int/float/bool/None)."""
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise UserInputError(
            f"{what} must be JSON-native (dict, list, str, int, float, bool, None): {exc}; "
            "convert NumPy values with .tolist() / float()") from None


@dataclass(frozen=True)
class StoreSchema:
    """Shapes of a store: observation size ``obs``, action size ``act`` and rows per chunk ``C``."""

    observation_size: int
    action_size: int
    chunk_rows: int

    def width(self, kind: str | None) -> int | None:
        """Trailing dimension for a column kind ("obs" -> obs, "act" -> act, None -> 1-D)."""
        return {"obs": self.observation_size, "act": self.action_size, None: None}[kind]

    def shape(self, name: str, rows: int) -> tuple[int, ...]:
        """On-disk shape of row column ``name`` holding ``rows`` rows."""
        width = self.width(ROW_COLUMNS[name][1])
        return (rows,) if width is None else (rows, width)

    def to_json(self) -> dict[str, Any]:
        columns = {name: {"dtype": dtype, "shape": ["N"] if kind is None else ["N", self.width(kind)]}
                   for name, (dtype, kind) in ROW_COLUMNS.items()}
        columns[BOUNDARY_ARRAY] = {"dtype": "int64", "shape": ["E"]}
        return {"observation_size": self.observation_size, "action_size": self.action_size,
                "chunk_rows": self.chunk_rows, "columns": columns}

