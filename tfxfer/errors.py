"""One error type for everything a user can get wrong, with a message that helps.

Every message states the rule, the valid values, what was received and the fix, on one line, so
the CLI can print it without a traceback.

Example:
    >>> from tfxfer.errors import UserError
    >>> str(UserError("epochs must be >= 1", got=0, fix="pass --epochs 5"))
    'epochs must be >= 1; got 0. Fix: pass --epochs 5'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class UserError(ValueError):
    """A mistake in the user's arguments, config or data (never a bug in tfxfer).

    Args:
        rule: What must hold, e.g. ``"backbone must be a registered name"``.
        got: What was received (omitted from the message when ``None``).
        valid: The valid choices, listed in the message when given.
        fix: How to fix it.
    """

    def __init__(
        self,
        rule: str,
        *,
        got: Any = None,
        valid: Iterable[Any] | None = None,
        fix: str | None = None,
    ):
        parts = [rule]
        if valid is not None:
            parts.append("valid: " + ", ".join(str(v) for v in valid))
        if got is not None:
            parts.append(f"got {got!r}" if not isinstance(got, (int, float)) else f"got {got}")
        message = "; ".join(parts)
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)
