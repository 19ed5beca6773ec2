"""Labelled text for :mod:`tfxfer.text`: a folder of ``.txt`` files, a CSV/TSV file, or SST-2.

``data`` is one of:

- a **folder** with one sub-folder per class and one UTF-8 ``.txt`` file per example
  (``pos/0001.txt``), optionally under ``train/`` and ``val/`` (or ``validation/``, ``dev/``,
  ``test/``; with ``train/`` alone, ``val_split`` of it is held out);
- a **CSV or TSV file** (``.csv``, ``.tsv``, optionally ``.gz``) with a header row naming a
  ``label`` column and a text column (``text``, ``sentence`` or ``content``); or a folder holding
  ``train.<ext>`` and ``dev.<ext>`` (or ``val``/``validation``) such files;
- ``sst2``: the GLUE SST-2 binary sentiment data (67,349 training sentences, the 872 of the dev
  set for validation), from ``$TFXFER_DATA_DIR/sst2`` (the offline kit); there is no download.

Without a validation split, ``val_split`` of each class is held out (seeded). Class names are
the folder names or the label values, sorted (numerically when every label is an integer).

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "reviews.csv").write_text("text,label\\ngreat,pos\\nawful,neg\\nfine,pos\\n")
    >>> data = load(str(root / "reviews.csv"), val_split=0.5)
    >>> data.class_names, len(data.train) + len(data.val)
    (['neg', 'pos'], 3)
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfxfer.errors import UserError

TEXT_COLUMNS = ("text", "sentence", "content")
VAL_NAMES = ("val", "validation", "dev")
SST2_CLASSES = ["negative", "positive"]


@dataclass
class TextSplit:
    """Texts and their integer labels."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class TextData:
    """A text dataset: training and validation splits, class names, where it came from."""

    train: TextSplit
    val: TextSplit
    class_names: list[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def report(self) -> dict:
        """``data_report.json``: counts per class and split."""
        counts = {
            name: {c: int(np.sum(split.labels == i)) for i, c in enumerate(self.class_names)}
            for name, split in (("train", self.train), ("val", self.val))
        }
        return {
            "source": self.source,
            "class_names": self.class_names,
            "counts": counts,
            "num_train": len(self.train),
            "num_val": len(self.val),
            "skipped": [],
        }

    def describe(self) -> str:
        return (
            f"data: {self.source}: {self.num_classes} classes {self.class_names}, "
            f"{len(self.train)} training and {len(self.val)} validation texts"
        )


def load(
    data: str,
    val_split: float = 0.2,
    seed: int = 0,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
) -> TextData:
    """Reads ``data`` (see the module docstring) into a :class:`TextData`."""
    if data == "sst2":
        train, val, names = _sst2()
    elif os.path.isfile(data):
        train, val, names = _table(Path(data)), None, None
    elif os.path.isdir(data):
        train, val, names = _folder(Path(data))
    else:
        raise UserError(
            "text data must be a folder of class sub-folders of .txt files, a "
            ".csv/.tsv file, or the built-in sst2",
            valid=["<folder>", "<file>.csv", "<file>.tsv", "sst2"],
            got=data,
            fix="check the path (it must exist)",
        )
    if names is None:
        labels = sorted({lab for _, lab in train + (val or [])}, key=_label_key)
        names = labels
    index = {name: i for i, name in enumerate(names)}
    train_split = _as_split(train, index)
    if val is None:
        train_split, val_split_ = _hold_out(train_split, val_split, seed)
    else:
        val_split_ = _as_split(val, index)
    if len(train_split) == 0 or len(val_split_) == 0:
        raise UserError(
            "text data needs at least one training and one validation text",
            got=f"{len(train_split)} training, {len(val_split_)} validation",
            fix="add texts, or change val_split",
        )
    return TextData(
        _limit(train_split, train_per_class, seed),
        _limit(val_split_, val_per_class, seed),
        list(names),
        data,
    )


def _label_key(label: str):
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def _as_split(rows: list[tuple[str, str]], index: dict[str, int]) -> TextSplit:
    return TextSplit([t for t, _ in rows], np.array([index[lab] for _, lab in rows], np.int64))


def _hold_out(split: TextSplit, fraction: float, seed: int) -> tuple[TextSplit, TextSplit]:
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(split.labels):
        idx = rng.permutation(np.flatnonzero(split.labels == c))
        val.extend(idx[: int(round(fraction * len(idx)))])
    is_val = np.zeros(len(split), bool)
    is_val[val] = True
    pick = lambda mask: TextSplit(
        [split.texts[i] for i in np.flatnonzero(mask)], split.labels[mask]
    )
    return pick(~is_val), pick(is_val)


def _limit(split: TextSplit, per_class: int | None, seed: int) -> TextSplit:
    if per_class is None:
        return split
    rng = np.random.default_rng(seed)
    keep = np.sort(
        np.concatenate(
            [
                rng.choice(idx, min(per_class, len(idx)), replace=False)
                for idx in (np.flatnonzero(split.labels == c) for c in np.unique(split.labels))
            ]
        )
    )
    return TextSplit([split.texts[i] for i in keep], split.labels[keep])


def _sst2() -> tuple[list, list, list[str]]:
    root = os.environ.get("TFXFER_DATA_DIR")
    folder = Path(root or "") / "sst2"
    if not root or not (folder / "train.tsv.gz").is_file():
        raise UserError(
            "the built-in sst2 is read from $TFXFER_DATA_DIR/sst2 (train.tsv.gz, "
            "dev.tsv.gz: label<TAB>text); tfxfer does not download it",
            got=str(folder) if root else "TFXFER_DATA_DIR unset",
            fix='run eval "$(../shared/kit/prepare.sh)", or pass --data with the '
            "GLUE SST-2 .tsv files",
        )

    def name(rows):
        bad = [lab for _, lab in rows if lab not in ("0", "1")]
        if bad:
            raise UserError(
                "SST-2's labels must be 0 or 1",
                got=bad[:3],
                fix=f"restore {folder} from the kit or GLUE",
            )
        return [(t, SST2_CLASSES[int(lab)]) for t, lab in rows]

    return (
        name(_table(folder / "train.tsv.gz")),
        name(_table(folder / "dev.tsv.gz")),
        SST2_CLASSES,
    )


def _table(path: Path) -> list[tuple[str, str]]:
    """``(text, label)`` rows of a CSV/TSV file with a header row."""
    base = path.name[:-3] if path.name.endswith(".gz") else path.name
    if not base.endswith((".csv", ".tsv")):
        raise UserError(
            "a text data file must be .csv or .tsv (optionally .gz)",
            got=str(path),
            fix="rename it, or pass a folder of class sub-folders of .txt files",
        )
    opener = gzip.open if path.name.endswith(".gz") else open
    try:  # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            raw = f.read()
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise UserError(
            f"{path} must be a readable UTF-8 text file",
            got=f"{type(exc).__name__}: {exc}",
            fix="re-save it as UTF-8 (and re-compress a damaged .gz)",
        ) from None
    tab = base.endswith(".tsv")
    csv.field_size_limit(max(csv.field_size_limit(), len(raw)))
    reader = csv.reader(
        io.StringIO(raw),
        delimiter="\t" if tab else ",",
        quoting=csv.QUOTE_NONE if tab else csv.QUOTE_MINIMAL,
    )
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        text_col = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
        if "label" not in header or text_col is None:
            raise UserError(
                f"{path} must have a header row with a label column and a text "
                f"column ({'/'.join(TEXT_COLUMNS)})",
                got=header,
                fix="add the header row, e.g. text,label",
            )
        label_col = header.index("label")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header) or not row[label_col].strip() or not row[text_col].strip():
                raise UserError(
                    f"{path} line {reader.line_num} must have {len(header)} fields, "
                    "with a text and a label",
                    got=row,
                    fix="fix or delete that line",
                )
            rows.append((row[text_col].strip(), row[label_col].strip()))
    except csv.Error as exc:
        raise UserError(
            f"{path} must be valid {'TSV' if tab else 'CSV'}",
            got=f"line {reader.line_num}: {exc}",
            fix="fix the quoting on that line",
        ) from None
    if not rows:
        raise UserError(
            f"{path} must hold at least one row under its header",
            got=0,
            fix="add (text, label) rows",
        )
    return rows


def _folder(root: Path) -> tuple[list, list | None, list[str] | None]:
    tables = {
        p.name.split(".")[0].lower(): p
        for p in root.iterdir()
        if p.is_file() and p.name.lower().endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz"))
    }
    val_table = next((tables[n] for n in VAL_NAMES if n in tables), None)
    if "train" in tables and val_table is not None:
        return _table(tables["train"]), _table(val_table), None
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    val_dir = next((subdirs[n] for n in VAL_NAMES + ("test",) if n in subdirs), None)
    if "train" in subdirs and val_dir is None:  # train/ alone: its classes, a held-out split
        train, names = _class_folders(subdirs["train"])
        return train, None, names
    if "train" in subdirs:
        train, names = _class_folders(subdirs["train"])
        val, val_names = _class_folders(val_dir)
        if val_names != names:
            raise UserError(
                f"{val_dir} must hold the same class folders as {subdirs['train']}",
                got=val_names,
                fix=f"make its sub-folders {names}",
            )
        return train, val, names
    train, names = _class_folders(root)
    return train, None, names


def _class_folders(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = [(_read_text(f), c) for c in classes for f in sorted((root / c).glob("*.txt"))]
    if len(classes) < 2 or not rows:
        raise UserError(
            f"{root} must hold one sub-folder per class (at least 2) of .txt files",
            got=f"{len(classes)} class folders, {len(rows)} .txt files",
            fix="lay it out as DIR/<class>/<example>.txt, or pass a .csv file",
        )
    return rows, classes


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UserError(
            f"every .txt file must be UTF-8 text; {path} is not",
            got=str(exc),
            fix="re-save it as UTF-8, or delete it",
        ) from None
    if not text:
        raise UserError(
            f"every .txt file must hold text; {path} is empty",
            got="empty file",
            fix="write its text, or delete it",
        )
    return text
