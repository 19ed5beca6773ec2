"""``tfxfer predict``: classify image files with an exported model, to CSV or JSON.

    tfxfer predict runs/ants/saved_model photos/ more/*.jpg --output predictions.csv --tta flip
    python -m tfxfer.predict runs/ants/saved_model photos/ --output predictions.json

Inputs are files, folders (searched recursively for image extensions) and glob patterns. The
exported SavedModel decodes and resizes every file itself (:mod:`tfxfer.deploy.serving`), so this
needs TensorFlow and nothing else: no Pillow, no matplotlib, none of tfxfer's training code.

Each row holds the file, its top-k classes and scores (``class_1, score_1, ...``; a multi-task
model prefixes each head's columns with its name) and an ``error`` column. A file that cannot be
read or decoded gets its reason there, is reported on stderr, and the others go on; the exit
status is 0 when at least one file was classified, 1 when none was, 2 for a usage error.

``--tta flip`` or ``--tta crops`` averages the probabilities of the views of
:mod:`tfxfer.methods.tta`, built from the decoded image the model sees.

Example:
    >>> from tfxfer.predict import find_images
    >>> find_images(["no/such/place/*.jpg"])
    []
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from tfxfer.atomic import writable_file, write_with
from tfxfer.config import TTA_MODES
from tfxfer.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def find_images(inputs: list[str]) -> list[str]:
    """Files named, found under folders, or matched by globs; sorted within each input."""
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found += sorted(
                os.path.join(root, f)
                for root, _, files in os.walk(item)
                for f in files
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.exists(item):
            found.append(item)
        else:
            found += sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
    return list(dict.fromkeys(found))


def model_dir(path: str) -> str | None:
    """The SavedModel folder that ``path`` names: itself, or the ``saved_model`` folder of the
    run folder it names; None when it is neither."""
    for candidate in (path, os.path.join(path, "saved_model")):
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    return None


class _Progress:
    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream, self.done, self.shown = total, stream, 0, -1
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def advance(self, n: int) -> None:
        self.done += n
        tenth = self.done * 10 // max(1, self.total)
        if self.tty or tenth != self.shown or self.done == self.total:
            self.shown = tenth
            bar = "#" * (self.done * 30 // max(1, self.total))
            end = "\r" if self.tty and self.done < self.total else "\n"
            self.stream.write(f"[{bar:<30}] {self.done}/{self.total} images{end}")
            self.stream.flush()


class Predictor:
    """An exported tfxfer SavedModel, with optional test-time augmentation.

    Args:
        model_dir: The run's ``saved_model`` directory.
        tta: One of :data:`tfxfer.methods.tta.MODES`.
    """

    def __init__(self, model_dir: str, tta: str = "none"):
        import tensorflow as tf

        self.tf, self.tta = tf, tta
        self.model = tf.saved_model.load(model_dir)
        meta = {k: v.numpy() for k, v in self.model.metadata().items()}
        self.tasks = [t.decode() for t in meta["tasks"]]
        self.k = int(meta["top_k"])
        key = "class_names" if self.tasks == ["head"] else "{}/class_names"
        self.names = {t: [c.decode() for c in meta[key.format(t)]] for t in self.tasks}

    def probabilities(self, blobs: list[bytes]) -> dict:
        """``{task: (n, K) probabilities}`` of encoded images (one bad file fails the call)."""
        tf = self.tf
        data = tf.constant(blobs)
        if self.tta == "none":
            return {t: np.asarray(v) for t, v in self._probs(self.model.serve_bytes(data)).items()}
        images = self.model.decode(data)["images"]

        def predict(views):
            pixels = tf.cast(tf.clip_by_value(tf.round(views), 0, 255), tf.uint8)
            return {t: v.numpy() for t, v in self._probs(self.model.serve_images(pixels)).items()}

        from tfxfer.methods import tta as tta_lib

        return tta_lib.average(predict, images, self.tta)

    def _probs(self, out: dict) -> dict:
        if self.tasks == ["head"]:
            return {"head": out["probabilities"]}
        return {t: out[f"{t}/probabilities"] for t in self.tasks}

    def rows(self, blobs: list[bytes]) -> list[dict]:
        """One row of top-k classes and scores per image."""
        probs = self.probabilities(blobs)
        rows = [{} for _ in blobs]
        for task, p in probs.items():
            prefix = "" if self.tasks == ["head"] else f"{task}_"
            k = min(self.k, len(self.names[task]))
            order = np.argsort(-p, axis=1, kind="stable")[:, :k]
            for row, idx, scores in zip(rows, order, p):
                for rank, i in enumerate(idx, 1):
                    row[f"{prefix}class_{rank}"] = self.names[task][i]
                    row[f"{prefix}score_{rank}"] = round(float(scores[i]), 6)
        return rows


def predict_files(
    predictor: Predictor, files: list[str], batch_size: int = 32, progress: _Progress | None = None
) -> list[dict]:
    """Rows for ``files``; an unreadable file gets an ``error`` and the rest go on."""
    out: list[dict] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        blobs, errors = [], {}
        for f in chunk:
            try:
                with open(f, "rb") as fh:
                    blobs.append(fh.read())
            except OSError as exc:
                errors[f] = exc.strerror or str(exc)
                blobs.append(b"")
            if not blobs[-1] and f not in errors:
                errors[f] = "empty file (0 bytes)"
        good = [(f, b) for f, b in zip(chunk, blobs) if f not in errors]
        try:
            rows = (
                dict(zip([f for f, _ in good], predictor.rows([b for _, b in good])))
                if good
                else {}
            )
        except Exception:  # one undecodable file fails a batch: find it file by file
            rows = {}
            for f, b in good:
                try:
                    rows[f] = predictor.rows([b])[0]
                except Exception as exc:
                    errors[f] = _reason(exc)
        for f in chunk:
            out.append({"file": f, **rows.get(f, {}), "error": errors.get(f, "")})
        if progress:
            progress.advance(len(chunk))
    return out


def _reason(exc: Exception) -> str:
    """The decoder's own reason: TensorFlow wraps it in lines of its own (``Graph execution
    error:``, ``Detected at node ...``, the traceback of the call, ``[[{{node ...}}]]``)."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    own = [
        line
        for line in lines
        if not line.endswith(":")
        and not line.startswith(
            ("Detected at node", "[[", "File ", "Graph execution error", "during context", "<")
        )
    ]
    return f"cannot decode ({own[0][:200] if own else type(exc).__name__})"


def write(rows: list[dict], path: str | None, fmt: str) -> None:
    """Writes rows as CSV or JSON to ``path`` (stdout when None)."""
    if fmt == "json":
        text = json.dumps(rows, indent=1) + "\n"
    else:
        columns = list(dict.fromkeys(k for row in rows for k in row if k != "error"))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns + ["error"], restval="")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    if path is None:
        sys.stdout.write(text)
        return
    write_with(path, lambda tmp: Path(tmp).write_text(text, newline=""))


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 2, like every tfxfer command
        self.exit(
            2, f"{self.prog}: error: invalid command line: {message}. Fix: see {self.prog} --help\n"
        )


def main(argv: list[str] | None = None, prog: str = "tfxfer predict") -> int:
    """The command line; returns the exit status."""
    p = _Parser(
        prog=prog,
        description="Classify images with an exported tfxfer model (a "
        "run's saved_model directory).",
    )
    p.add_argument("model", help="the run folder, or its saved_model folder")
    p.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--output", "-o", help="CSV or JSON file (by extension); default: CSV on stdout")
    p.add_argument("--format", choices=("csv", "json"), help="override the output format")
    p.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="test-time augmentation: none, flip (2 views), crops (6 views)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per call (default 32)")
    p.add_argument(
        "--shift",
        action="store_true",
        help="instead of predictions: accuracy on labelled images (class/image.jpg) clean and "
        "under 5 corruptions at 3 severities (tfxfer.data.shift), as JSON",
    )
    args = p.parse_args(argv)
    model = model_dir(args.model)
    if model is None:
        print(
            f"{prog}: error: the model must be a run folder or its saved_model folder (holding "
            f"saved_model.pb); got {args.model!r}. Fix: pass e.g. runs/small_similar or "
            "runs/small_similar/saved_model",
            file=sys.stderr,
        )
        return 2
    files = find_images(args.images)
    if not files:
        print(
            f"{prog}: error: no image files matched {args.images}; give files, folders or "
            f"globs of {', '.join(IMAGE_EXTENSIONS)}",
            file=sys.stderr,
        )
        return 2
    if args.output:
        try:  # before any image is classified: that work is not lost to a bad path
            writable_file(args.output)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "csv")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    predictor = Predictor(model, args.tta)
    if args.shift:
        try:
            from tfxfer.deploy.shift_check import shift_table

            table = shift_table(predictor, files, max(1, args.batch_size))
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        text = json.dumps(table, indent=1) + "\n"
        if args.output:
            write_with(args.output, lambda path: Path(path).write_text(text))
        else:
            print(text, end="")
        print(
            f"{prog}: {len(files)} images: clean {table['clean']}, shifted {table['mean']}",
            file=sys.stderr,
        )
        return 0
    rows = predict_files(predictor, files, max(1, args.batch_size), _Progress(len(files)))
    write(rows, args.output, fmt)
    bad = [r for r in rows if r["error"]]
    for r in bad:
        print(f"{prog}: unreadable: {r['file']}: {r['error']}", file=sys.stderr)
    print(
        f"{prog}: {len(rows) - len(bad)} of {len(rows)} images classified"
        + (f", {len(bad)} unreadable (listed above)" if bad else "")
        + (f"; wrote {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return 0 if len(bad) < len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m tfxfer.predict"))
