"""Type-checked construction of the config dataclasses from plain dicts, files and ``--set``.

:mod:`tfxfer.config` declares *what* can be configured; this module checks and converts the
values a user wrote (JSON, TOML, ``key=value`` strings) into those dataclasses, rejecting unknown
keys and wrong types with a :class:`~tfxfer.errors.UserError` that names the key and the fix.

Example:
    >>> from tfxfer.config.schema import parse_value
    >>> parse_value("1e-4"), parse_value("none"), parse_value("[1, 2]"), parse_value("adam")
    (0.0001, None, [1, 2], 'adam')
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from tfxfer.errors import UserError


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(
            f"{key} must be one of the supported values",
            valid=choices,
            got=value,
            fix=f"set {key} to one of them",
        )


def check_min(key: str, value: float | None, minimum: float, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= minimum if strict else value < minimum
    if bad:
        op = ">" if strict else ">="
        raise UserError(
            f"{key} must be {op} {minimum}", got=value, fix=f"pass a value {op} {minimum} for {key}"
        )


def parse_value(raw: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def shorthand(value: Any, key: str) -> Any:
    """A bare string as the table it stands for, ``{key: value}`` (``none`` parses as null: the
    name "none"), or ``value`` unchanged. ``key`` is the table's ``SHORTHAND`` (``preset`` for
    ``augment``, ``method`` for ``regularization``)."""
    if value is None or isinstance(value, str):
        return {key: "none" if value is None else value}
    return value


def merge(old: Any, new: Any, key: str | None = None) -> Any:
    """The value a key takes when ``new`` is written over ``old``: ``new``, except that a bare
    string written over a table with a shorthand ``key`` sets only that key
    (``--set augment=none`` keeps ``augment.synthetic_ratio``)."""
    if key and isinstance(old, dict) and key in old and (new is None or isinstance(new, str)):
        return {**old, **shorthand(new, key)}
    return new


def assign(
    data: Any, path: list[str], value: Any, full_key: str, shorthands: dict[str, str]
) -> None:
    """Sets the dotted ``path`` of the nested dict ``data`` to ``value``. ``shorthands``: the
    top-level tables that take a bare string, and the key it sets (``{"augment": "preset"}``)."""
    head, rest = path[0], path[1:]
    if isinstance(data, list):
        slot = list_slot(data, head, full_key)
    else:
        if head not in data:
            raise UserError(
                "unknown config key",
                valid=sorted(data),
                got=full_key,
                fix="check the spelling against `--help` or the Config docs",
            )
        slot = head
    if rest:
        inner = {} if rest[1:] else {"": shorthands.get(head)}  # a.b=none: b is a's shorthand?
        assign(data[slot], rest, value, full_key, inner)
    else:
        if shorthands.get("") == slot and value is None:
            value = "none"  # --set augment.preset=none: the name "none", not null
        data[slot] = merge(data[slot], value, shorthands.get(slot))


def list_slot(entries: list, head: str, full_key: str) -> int:
    """The entry of a list (the phases) that a dotted key's part names: its index from 0
    (``phases.1``) or its name (``phases.finetune``), refused with both lists otherwise."""
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    if head.isdigit() and int(head) < len(entries):
        return int(head)
    if head in names:
        if names.count(head) > 1:
            raise UserError(
                f"{full_key!r} names an entry that several share",
                got=head,
                fix=f"use its index instead (0..{len(entries) - 1})",
            )
        return names.index(head)
    labels = [f"{i} or {n}" if n else str(i) for i, n in enumerate(names or entries)]
    example = (names[-1] if names else None) or "0"
    raise UserError(
        f"{full_key!r} must name an existing entry by index (from 0) or name",
        valid=labels,
        got=head,
        fix=f"write e.g. --set {full_key.replace(head, example, 1)}=VALUE",
    )


def build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Type-checks ``data`` against the dataclass ``cls`` and instantiates it."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix or cls.__name__} must be a table of keys", got=data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(
            "unknown config key",
            valid=sorted(names),
            got=f"{prefix}{sorted(unknown)[0]}",
            fix="check the spelling against `--help` or the Config docs",
        )
    kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked and converted to the type ``hint`` (a dataclass from a dict, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        first_error = None
        for alternative in inner:  # in order; the first one's error is the one shown
            try:
                return coerce(value, alternative, key)
            except UserError as exc:
                first_error = first_error or exc
        raise first_error
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(
                f"{key} must be a table", got=value, fix=f'write e.g. {key} = {{name = ["a", "b"]}}'
            )
        return {str(k): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list", got=value, fix=f"write e.g. {key}=[...]")
        return tuple(coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if getattr(hint, "SHORTHAND", None):
            value = shorthand(value, hint.SHORTHAND)
        return build(hint, {**dataclasses.asdict(hint()), **_as_table(value, key)}, f"{key}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false", got=value, fix=f"write {key}=true")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key} must be an integer", got=value, fix=f"write e.g. {key}=10")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{key} must be a number", got=value, fix=f"write e.g. {key}=0.001")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key} must be a string", got=value, fix=f'write {key}="..."')
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug, not a user error


def _as_table(value: Any, key: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if not isinstance(value, dict):
        raise UserError(
            f"{key} must be a table of keys",
            got=value,
            fix=f'give {key} as a table (e.g. {{"epochs": 5}} for a phase), or '
            f"set its keys one by one: --set {key}.KEY=VALUE",
        )
    return value
