"""``tfxfer predict MODEL FOLDER --shift``: check an exported model before shipping it, on
labelled images clean and under the offline shift suite (:mod:`tfxfer.data.shift`).

Each file is decoded by the SavedModel itself (its ``decode`` endpoint: the serving decode,
exact to training's), rounded to uint8 at the model's input size, corrupted there, and
classified through ``serve_images``. Labels are the files' folder names, which must be the
model's classes. Needs TensorFlow alone, like the rest of ``tfxfer predict``.
"""

from __future__ import annotations

from pathlib import Path

from tfxfer.errors import UserError


def shift_table(predictor, files: list[str], batch_size: int = 32) -> dict:
    """Accuracy on labelled ``files`` (each in a folder named by its class) clean and under the
    offline shift suite (:mod:`tfxfer.data.shift`), each file decoded as the model decodes it,
    then corrupted at the model's input size."""
    from tfxfer.data import shift

    tf, names = predictor.tf, predictor.names[predictor.tasks[0]]
    if predictor.tasks != ["head"]:
        raise UserError(
            "--shift measures single-task models", got=predictor.tasks, fix="drop --shift"
        )
    folders = sorted({Path(f).parent.name for f in files} - set(names))
    if folders:
        raise UserError(
            "--shift needs labelled images: each file in a folder named by one of the "
            "model's classes",
            valid=names,
            got=folders,
            fix="pass a folder laid out as class/image.jpg (e.g. a validation split)",
        )
    images = []
    for start in range(0, len(files), batch_size):
        blobs = [Path(f).read_bytes() for f in files[start : start + batch_size]]
        decoded = predictor.model.decode(tf.constant(blobs))["images"]
        images.append(tf.cast(tf.clip_by_value(tf.round(decoded), 0, 255), tf.uint8))
    labels = [names.index(Path(f).parent.name) for f in files]

    def classify(batch):
        return predictor.model.serve_images(batch)["probabilities"]

    return {"images": len(files), **shift.accuracy(classify, tf.concat(images, 0), labels)}
