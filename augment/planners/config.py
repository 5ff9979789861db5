"""Planner configs: the :class:`PlannerConfig` mixin of every planner's frozen config dataclass
(acting-only ``PLAN_FIELDS`` left out of the cache key, named ``VARIANTS``, training-budget fields, the
config hash) and ``KEY=VALUE`` overrides parsed into typed field values with did-you-mean errors
(:func:`parse_overrides`, :func:`apply_overrides`). Re-exported by :mod:`augment.planners.base`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar

from stores.errors import UserInputError, did_you_mean

__all__ = ["PlannerConfig", "apply_overrides", "parse_overrides"]


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class PlannerConfig:
    """Mixin for a planner's frozen config dataclass (see the module docstring).

    PLAN_FIELDS: fields that only change acting or generating (guidance, plans per step, evaluation
    budget); they stay out of :meth:`config_hash`, so changing them reuses the trained networks.
    VARIANTS: named override sets, e.g. ``{"diffuser": {"weighting": False, ...}}``.
    Every config has the fields ``profile`` (informational), ``seed`` and ``device`` (where it trains and
    acts); UNHASHED fields stay out of :meth:`config_hash` and :meth:`differences`.
    """

    UNHASHED: ClassVar[tuple[str, ...]] = ("profile", "device")
    PLAN_FIELDS: ClassVar[tuple[str, ...]] = ()
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Fields counting training updates (None: int fields named ``*_steps`` / ``train_steps`` outside
    #: PLAN_FIELDS, except ``diffusion_steps`` and ``warmup_steps``). The latency benchmark sets them to 1.
    TRAIN_BUDGET_FIELDS: ClassVar[tuple[str, ...] | None] = None

    def training_budget_fields(self) -> tuple[str, ...]:
        """Names of the fields that count training updates (see TRAIN_BUDGET_FIELDS)."""
        if self.TRAIN_BUDGET_FIELDS is not None:
            return tuple(self.TRAIN_BUDGET_FIELDS)
        assert dataclasses.is_dataclass(self)
        skip = set(self.PLAN_FIELDS) | {"diffusion_steps", "warmup_steps"}
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name.endswith("steps") and f.name not in skip and isinstance(value, int)
                    and not isinstance(value, bool)):
                out.append(f.name)
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """JSON-native dict of every field (tuples become lists)."""
        assert dataclasses.is_dataclass(self)
        return _jsonable(self)

    def training_json(self) -> dict[str, Any]:
        """The fields that change the trained networks (everything but PLAN_FIELDS and UNHASHED)."""
        skip = set(self.PLAN_FIELDS) | set(self.UNHASHED)
        return {k: v for k, v in self.to_json().items() if k not in skip}

    def config_hash(self) -> str:
        """sha256 (first 12 hex) of :meth:`training_json`."""
        return hashlib.sha256(json.dumps(self.training_json(), sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Any:
        """Rebuild from :meth:`to_json` output (lists become tuples where the field default is a tuple)."""
        assert dataclasses.is_dataclass(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise UserInputError(f"{cls.__name__}: unknown fields {sorted(unknown)} in a saved config")
        out: dict[str, Any] = {}
        for key, value in data.items():
            default = fields[key].default
            out[key] = tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value
        return cls(**out)

    def differences(self, other: Any) -> list[str]:
        """``field: other -> self`` for every field that differs from ``other`` (``seed`` and UNHASHED
        excluded), e.g. against the paper profile's config."""
        assert dataclasses.is_dataclass(self)
        out = []
        for f in dataclasses.fields(self):
            if f.name == "seed" or f.name in self.UNHASHED:
                continue
            a, b = getattr(other, f.name), getattr(self, f.name)
            if a != b:
                out.append(f"{f.name}: {_fmt(a)} -> {_fmt(b)}")
        return out


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v) if v else "()"
    return str(v)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(text: str, current: Any, key: str, optional: bool = False) -> Any:
    """Parse ``text`` as the type of ``current`` (bool, int, float, str, tuple of ints/floats, None);
    ``none`` / ``null`` gives None for ``optional`` fields."""
    t = text.strip()
    if optional and t.lower() in ("none", "null"):
        return None
    try:
        if isinstance(current, bool):
            low = t.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(t)
        if isinstance(current, int):
            return int(t)
        if isinstance(current, float):
            return float(t)
        if isinstance(current, tuple):
            parts = [p for p in t.replace("x", "/").replace(" ", "/").split("/") if p]
            kind = type(current[0]) if current else int
            return tuple(kind(p) for p in parts)
        if current is None:
            for kind in (int, float):
                try:
                    return kind(t)
                except ValueError:
                    pass
            return None if t.lower() in ("none", "null", "") else t
    except ValueError as exc:
        raise UserInputError(f"option {key}={text}: expected a {type(current).__name__}"
                             + (" (e.g. 32/64/128)" if isinstance(current, tuple) else "")) from exc
    return t


def parse_overrides(text: str | None) -> list[tuple[str, str | None]]:
    """``"diffuser,alpha=0.01"`` -> ``[("diffuser", None), ("alpha", "0.01")]`` (variants have no value)."""
    items: list[tuple[str, str | None]] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        items.append((key.strip(), value if sep else None))
    return items


def apply_overrides(config: Any, items: list[tuple[str, str | None]] | dict[str, Any]) -> Any:
    """``config`` with named variants and ``KEY=VALUE`` overrides applied in order.

    items: from :func:`parse_overrides` (string values are parsed as the field's type), or a dict of
    already typed values. Unknown keys or variants raise :class:`UserInputError` with a suggestion.
    """
    optional = {f.name for f in dataclasses.fields(config) if "None" in str(f.type)}
    fields = {f.name for f in dataclasses.fields(config)}
    variants: dict[str, dict[str, Any]] = getattr(config, "VARIANTS", {})
    pairs = list(items.items()) if isinstance(items, dict) else list(items)
    for key, value in pairs:
        if value is None and not isinstance(items, dict):
            if key not in variants:
                raise UserInputError(did_you_mean(
                    key, list(variants) + sorted(fields),
                    hint=f"variants are: {', '.join(variants) or 'none'}; or give KEY=VALUE with KEY a "
                         f"field of {type(config).__name__}"))
            config = dataclasses.replace(config, **variants[key])
            continue
        if key not in fields:
            raise UserInputError(did_you_mean(key, sorted(fields),
                                              hint=f"fields of {type(config).__name__}: "
                                                   f"{', '.join(sorted(fields))}"))
        current = getattr(config, key)
        typed = _coerce(value, current, key, key in optional) if isinstance(value, str) else value
        config = dataclasses.replace(config, **{key: typed})
    return config
