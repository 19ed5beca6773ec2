"""The exported text SavedModel: raw strings in, class names and probabilities out.

Tokenisation is inside the graph (:mod:`tfxfer.text.wordpiece`, core TensorFlow ops only), so:

- a client sends text, not token ids, and can never tokenise differently from training (a
  different vocabulary, casing or accent rule would silently change every prediction);
- the SavedModel loads with plain TensorFlow: no tfxfer, no KerasHub, no tensorflow-text, whose
  custom ops a SavedModel would otherwise need at load time;
- the vocabulary and class names are constants of the graph: the folder is the whole
  deployable.

Signatures (``tf.saved_model.load(path).signatures[...]``, or the same names as methods):

- ``serve_text`` (also ``serving_default``): ``text``, a ``string[N]`` batch of UTF-8 texts ->
  ``probabilities`` ``[N, K]``, ``top_k_classes`` (class-name strings, best first),
  ``top_k_scores`` ``[N, k]`` and ``logits``. Texts longer than ``sequence_length`` tokens are
  cut.
- ``tokenize``: ``text`` -> ``token_ids``, ``padding_mask``, what the encoder sees.
- ``metadata``: no inputs -> ``class_names``, ``top_k``, ``sequence_length``.

Example:
    >>> import tensorflow as tf  # doctest: +SKIP
    >>> served = tf.saved_model.load("runs/text_classify/saved_model")  # doctest: +SKIP
    >>> out = served.serve_text(tf.constant(["a gorgeous, witty film"]))  # doctest: +SKIP
    >>> out["top_k_classes"][0, 0].numpy()  # doctest: +SKIP
    b'positive'
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.deploy.serving import predictions


class _TextServer:
    def __init__(self, tm, class_names: list[str], top_k: int):
        self.tm = tm
        self.names = tf.constant(class_names)
        self.k = min(top_k, len(class_names))

    def tokens(self, text):
        batch = self.tm.tokenizer(text, self.tm.sequence_length)
        return {k: v for k, v in batch.items() if k in self.tm.input_names}

    def serve_text(self, text):
        return predictions(self.tm.model(self.tokens(text), training=False), self.names, self.k)

    def tokenize(self, text):
        batch = self.tm.tokenizer(text, self.tm.sequence_length)
        return {"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]}

    def metadata(self):
        return {
            "class_names": self.names,
            "top_k": tf.constant(self.k),
            "sequence_length": tf.constant(self.tm.sequence_length),
        }


def export(tm, class_names: list[str], path: str | Path, top_k: int = 5) -> Path:
    """Writes the raw-text SavedModel of a trained :class:`~tfxfer.text.encoder.TextModel`."""
    server = _TextServer(tm, list(class_names), top_k)
    archive = keras.export.ExportArchive()
    archive.track(tm.tokenizer)  # its lookup tables: not variables, so tracked by hand
    text = [tf.TensorSpec([None], tf.string, name="text")]
    archive.add_endpoint("serve_text", server.serve_text, input_signature=text)
    archive.add_endpoint("tokenize", server.tokenize, input_signature=text)
    archive.add_endpoint("metadata", server.metadata, input_signature=[])
    write_with(path, lambda tmp: archive.write_out(tmp, verbose=False))
    return Path(path)
