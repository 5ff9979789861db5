"""``KEY=VALUE,...`` options of ``augment compare`` arms (``dydiff:M=1``, ``rollout:h=3,lambda=1``, ...):
the one parser and arm-naming rule the arm plugin modules (:mod:`augment.arms`,
:mod:`augment.generators.arms`) share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from baselines.compare import Arm
from stores.errors import UserInputError


def parse_options(arm: str, arg: str | None, table: dict[str, tuple[str, type]], *,
                  example: str | None = None) -> dict[str, Any]:
    """``"h=3,lambda=1"`` -> ``{"horizon": 3, "penalty": 1.0}`` with the arm's key table.

    table: option key -> (config field, type to parse the value as); blank items are skipped, later
    keys win. example: the spec quoted when a key is unknown (default ``ARM:FIRSTKEY=...``). Raises
    :class:`UserInputError` for an item that is not KEY=VALUE with a known KEY, or a value of the wrong type.
    """
    options: dict[str, Any] = {}
    for item in (arg or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in table:
            hint = example if example is not None else f"{arm}:{next(iter(table))}=..."
            raise UserInputError(f"{arm} arm option '{item}' is not KEY=VALUE with KEY one of "
                                 f"{', '.join(table)} (e.g. {hint})")
        field_name, kind = table[key]
        try:
            options[field_name] = kind(value.strip())
        except ValueError as exc:
            raise UserInputError(f"{arm} arm option {key} needs a {kind.__name__}, got '{value}'") from exc
    return options


def arm_name(prefix: str, arg: str | None) -> str:
    """The arm's name: ``prefix``, or ``prefix:ITEM,...`` with the non-blank items, spaces removed."""
    items = [item.strip().replace(" ", "") for item in (arg or "").split(",") if item.strip()]
    return prefix if not items else f"{prefix}:{','.join(items)}"


def options_arm(prefix: str, arg: str | None, options: dict[str, Any], runner: Callable[..., Any]) -> Arm:
    """The Arm named by :func:`arm_name` whose runner is ``runner(request, options=...)`` with the parsed
    options as a sorted tuple of (field, value) pairs (picklable, order-independent)."""
    return Arm(arm_name(prefix, arg), functools.partial(runner, options=tuple(sorted(options.items()))))
