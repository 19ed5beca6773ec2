"""Class attribute tables for zero-shot learning: reading, checking, and the built-in ones.

A table is a CSV file: a header ``class,attr1,attr2,...`` and one row per class, with binary or
continuous numeric values. Lines starting with ``#`` are comments. Every check names the file,
the row and what to change, in one line.

Built-in tables (used when ``zero_shot.attributes`` is unset): ``fashion_mnist``, hand-made for
tfxfer and documented in its own header (``tfxfer/zero_shot/tables/fashion_mnist_attributes.csv``).

Example:
    >>> from tfxfer.zero_shot import attributes
    >>> table = attributes.builtin("fashion_mnist")
    >>> len(table.class_names), table.values.shape[1], table.row("Sneaker")["closed_toe"]
    (10, 12, 1.0)
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfxfer.errors import UserError

TABLES = Path(__file__).resolve().parent / "tables"
BUILTIN_TABLES = {"fashion_mnist": TABLES / "fashion_mnist_attributes.csv"}


@dataclass(frozen=True)
class AttributeTable:
    """Attribute values per class.

    Attributes:
        class_names: Row names, in file order.
        attribute_names: Column names after ``class``.
        values: ``(classes, attributes)`` float array.
        source: The file it was read from.
    """

    class_names: tuple[str, ...]
    attribute_names: tuple[str, ...]
    values: np.ndarray
    source: str

    def row(self, name: str) -> dict[str, float]:
        """``{attribute: value}`` of one class."""
        return dict(zip(self.attribute_names, self.values[self.class_names.index(name)].tolist()))

    def signatures(self, class_names) -> np.ndarray:
        """The rows of ``class_names``, in that order (every name must be in the table)."""
        return self.values[[self.class_names.index(c) for c in class_names]]

    def is_binary(self) -> bool:
        return bool(np.isin(self.values, (0.0, 1.0)).all())


def builtin(name: str) -> AttributeTable:
    """The built-in table of dataset ``name`` (see the module docstring)."""
    if name not in BUILTIN_TABLES:
        raise UserError(
            "zero-shot needs an attribute table, and this data has no built-in one",
            valid=sorted(BUILTIN_TABLES),
            got=name,
            fix="pass --attributes FILE.csv (header: class,attr1,attr2,...)",
        )
    return read_csv(BUILTIN_TABLES[name])


def read_csv(path: str | Path) -> AttributeTable:
    """Reads and checks a table file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "the attribute table must be an existing CSV file",
            got=str(path),
            fix="pass --attributes with the path of a file: class,attr1,attr2,...",
        )
    text = "".join(
        line
        for line in path.read_text().splitlines(keepends=True)
        if not line.lstrip().startswith("#") and line.strip()
    )
    rows = list(csv.reader(io.StringIO(text)))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise UserError(
            f"attribute table {path} needs a header class,attr1,... and one row per class",
            got=f"{len(rows)} line(s)",
            fix="add the header and the rows",
        )
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise UserError(
            f"attribute table {path}: column names must be non-empty and unique",
            got=header,
            fix="rename the empty or repeated columns",
        )
    names, values = [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UserError(
                f"attribute table {path}: every row needs {len(header)} fields",
                got=f"row {number} ({row[0] if row else ''!r}) has {len(row)}",
                fix="give each class one value per attribute column",
            )
        names.append(row[0].strip())
        values.append([_number(path, number, header[j], cell) for j, cell in enumerate(row[1:], 1)])
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(
            f"attribute table {path}: each class must have one row",
            got=f"repeated: {duplicates}",
            fix="merge or remove the repeated rows",
        )
    return AttributeTable(
        tuple(names), tuple(header[1:]), np.asarray(values, np.float64), str(path)
    )


def _number(path: Path, row: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(
            f"attribute table {path}: values must be finite numbers (binary or continuous)",
            got=f"row {row}, column {column!r}: {cell!r}",
            fix="write a number such as 0, 1 or 0.35",
        )
    return value


def check(table: AttributeTable, class_names, unseen) -> list[str]:
    """Checks a table against the data and the unseen classes; returns warnings.

    Raises:
        UserError: A data class has no row, an unseen class is unknown, fewer than two classes
            are seen, no class is unseen, or two unseen classes share one signature.
    """
    missing = [c for c in class_names if c not in table.class_names]
    if missing:
        raise UserError(
            f"attribute table {table.source} must have a row for every class of the data",
            got=f"missing: {missing}",
            fix="add those rows",
        )
    unknown = [c for c in unseen if c not in class_names]
    if unknown:
        raise UserError(
            "every --unseen class must be a class of the data",
            valid=list(class_names),
            got=unknown,
            fix="check the spelling (class names are case-sensitive)",
        )
    repeated = sorted({c for c in unseen if list(unseen).count(c) > 1})
    if repeated:
        raise UserError(
            "each --unseen class must be named once", got=repeated, fix="remove the repeated names"
        )
    seen = [c for c in class_names if c not in unseen]
    if not unseen or len(seen) < 2:
        raise UserError(
            "zero-shot needs at least one unseen class and two seen classes",
            got=dict(unseen=list(unseen), seen=seen),
            fix="pass --unseen with some, but not all but one, of the classes",
        )
    rows = table.signatures(unseen)
    for i in range(len(unseen)):
        for j in range(i + 1, len(unseen)):
            if np.array_equal(rows[i], rows[j]):
                raise UserError(
                    "unseen classes must differ in some attribute",
                    got=f"{unseen[i]} and {unseen[j]} have the same row",
                    fix="add an attribute that tells them apart",
                )
    seen_rows = table.signatures(seen)
    constant = [a for j, a in enumerate(table.attribute_names) if np.ptp(seen_rows[:, j]) == 0]
    warnings = [
        f"attribute {a!r} has one value over every seen class: it cannot be learned, "
        "and only its prior informs the unseen classes"
        for a in constant
    ]
    warnings += [
        f"unseen class {u!r} has the same row as seen class {s!r}: generalised ZSL "
        "cannot tell them apart"
        for u, row in zip(unseen, rows)
        for s, seen_row in zip(seen, seen_rows)
        if np.array_equal(row, seen_row)
    ]
    return warnings
