"""User-facing errors.

Anything the user can fix (a misspelt name, a bad file, a wrong shape) raises :class:`UserInputError` with a
message that says how to fix it. The CLI prints that one line and exits 2; ``--debug`` shows the traceback.
``assert`` is kept for internal invariants only.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserInputError(ValueError):
    """A problem with the user's input; its message is the whole story (no traceback needed)."""


def did_you_mean(name: str, choices: Iterable[str], *, hint: str = "") -> str:
    """Return ``"unknown NAME; did you mean 'X'? HINT"`` text for an unknown ``name``.

    ``choices`` are the valid names; the closest (difflib ratio >= 0.6) is suggested when there is one.
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    text = f"unknown name '{name}'"
    if close:
        text += f"; did you mean '{close[0]}'?"
    if hint:
        text += f" {hint}"
    return text


def check_settings(checks: Iterable[tuple[bool, str]], *, prefix: str = "") -> None:
    """Raise :class:`UserInputError` with ``prefix + message`` for the first (ok, message) pair that is not
    ok (the settings checks of the config dataclasses)."""
    for ok, message in checks:
        if not ok:
            raise UserInputError(f"{prefix}{message}")
