"""BERT's WordPiece tokenisation in core TensorFlow ops, so a SavedModel can take raw text.

KerasHub's own tokenizers run on ``tensorflow-text``, whose ops are custom: a SavedModel that
holds them only loads in a process that has ``tensorflow-text`` installed, at the version that
matches its TensorFlow, and installing that package pins (and so may replace) TensorFlow.
This module does the same work with ops every TensorFlow build has (``regex_replace``,
``unicode_split``, hash tables, ``substr``), so the exported model is one self-contained
SavedModel that plain ``tensorflow`` serves, and training and serving share one tokenizer.

The steps are those of the BERT tokenizer (Devlin et al. 2019) as Hugging Face ``tokenizers``
implements them for ``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece``:

1. remove NUL, U+FFFD and every control, format, private-use and surrogate character (``Cc``,
   ``Cf``, ``Co``, ``Cs``) except tab, newline and carriage return; map every whitespace
   character to a space. Unassigned code points (``Cn``) are kept, as Hugging Face's tokenizer
   keeps them (measured: removing them changed 48,674 of the 194,560 code points below
   U+30000);
2. put spaces around CJK ideographs;
3. per character: strip accents (NFD, drop ``Mn``) and lower-case, when the vocabulary is
   uncased;
4. split on whitespace, and isolate every punctuation character (ASCII punctuation or ``P*``);
5. each word: greedy longest-match-first against the vocabulary, continuation pieces prefixed
   with ``##``; a word with no match at some position, or longer than 100 characters, becomes
   the unknown token as a whole.

The character classes of steps 1, 2 and 4 and the table of step 3 are built from Python's
``unicodedata`` when the tokenizer is made; they are constants of the graph. Known differences from
Hugging Face ``tokenizers``, all from Unicode versions: 503 of the 194,560 code points below
U+30000 (characters assigned or re-categorised after its Unicode tables, each alone between two
letters) tokenise differently; the CJK range follows Hugging Face's (``0x2B920``, where the
original BERT code has ``0x2B820``).

Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "witty", "film", "##s", ",", "fil"]
    >>> wp = WordPiece(vocab)
    >>> wp.ids(["A witty, FILMS"]).to_list()
    [[4, 5, 8, 6, 7]]
    >>> wp.pack(wp.ids(["a film"]), 6)["token_ids"].numpy().tolist()
    [[2, 4, 6, 3, 0, 0]]
"""

from __future__ import annotations

import functools
import sys
import unicodedata

import numpy as np
import tensorflow as tf

MAX_WORD_CHARS = 100
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
_MISSING = b"\xff"  # never valid UTF-8, so never a replacement


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return ord(ch) in (0, 0xFFFD) or unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_whitespace(ch: str) -> bool:
    return ch in "\t\n\r " or (ch.isspace() and not unicodedata.category(ch).startswith("C"))


def _code_points():
    return (chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)


def _char_class(codes: list[int]) -> str:
    """An RE2 character class matching exactly ``codes`` (sorted), as ranges."""
    parts, start = [], None
    for i, cp in enumerate(codes):
        if start is None:
            start = cp
        if i + 1 == len(codes) or codes[i + 1] != cp + 1:
            parts.append(f"\\x{{{start:X}}}" + (f"-\\x{{{cp:X}}}" if cp != start else ""))
            start = None
    return "[" + "".join(parts) + "]"


@functools.cache
def _classes() -> tuple[str, str, str]:
    """The regexes of the control, whitespace and punctuation characters (Python's Unicode)."""
    control, space, punct = [], [], []
    for ch in _code_points():
        if _is_control(ch):
            control.append(ord(ch))
        elif _is_whitespace(ch):
            space.append(ord(ch))
        elif _is_punctuation(ch):
            punct.append(ord(ch))
    return _char_class(control), _char_class(space), _char_class(punct)


def normalize_char(ch: str, lowercase: bool, strip_accents: bool) -> str:
    """Step 3 on one character: accents stripped (NFD, no ``Mn``), then lower-cased."""
    if strip_accents:
        ch = "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")
    return ch.lower() if lowercase else ch


@functools.cache
def _case_table(lowercase: bool, strip_accents: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(characters, replacements)`` for every character that step 3 changes."""
    keys, values = [], []
    if lowercase or strip_accents:
        for ch in _code_points():
            if _is_control(ch) or _is_whitespace(ch):
                continue
            out = normalize_char(ch, lowercase, strip_accents)
            if out != ch:
                keys.append(ch)
                values.append(out)
    return tuple(keys), tuple(values)


class WordPiece(tf.Module):
    """A BERT-style tokenizer over ``vocabulary``, in core TensorFlow ops.

    Args:
        vocabulary: The tokens, in id order (a BERT ``vocab.txt``'s lines).
        lowercase: Lower-case the text (uncased vocabularies).
        strip_accents: Strip accents; None follows ``lowercase``, as BERT's uncased models do.
        split_on_cjk: Put spaces around CJK ideographs.
        suffix: The prefix of continuation pieces.
        unk, cls, sep, pad: The special tokens; each must be in the vocabulary.
    """

    def __init__(
        self,
        vocabulary,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        split_on_cjk: bool = True,
        suffix: str = "##",
        unk: str = "[UNK]",
        cls: str = "[CLS]",
        sep: str = "[SEP]",
        pad: str = "[PAD]",
    ):
        super().__init__(name="wordpiece")
        vocabulary = [str(t) for t in vocabulary]
        first = {}
        for i, token in enumerate(vocabulary):
            first.setdefault(token, i)
        missing = [t for t in (unk, cls, sep, pad) if t not in first]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self.vocabulary_size = len(vocabulary)
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            first[t] for t in (unk, cls, sep, pad)
        )
        self.suffix = suffix
        strip = lowercase if strip_accents is None else strip_accents
        self.settings = {
            "lowercase": bool(lowercase),
            "strip_accents": bool(strip),
            "split_on_cjk": bool(split_on_cjk),
            "suffix": suffix,
        }
        self._vocab = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(first)), tf.constant(list(first.values()), tf.int64)
            ),
            -1,
        )
        keys, values = _case_table(bool(lowercase), bool(strip))
        self._case = None
        if keys:
            self._case = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values)),
                _MISSING,
            )
        self._control, self._space, self._punct = _classes()
        self._cjk = (
            _char_class([cp for lo, hi in CJK_RANGES for cp in range(lo, hi + 1)])
            if split_on_cjk
            else None
        )

    def words(self, texts) -> tf.RaggedTensor:
        """Steps 1-4: ``string[N]`` -> ragged ``string[N, words]``."""
        texts = tf.convert_to_tensor(texts, tf.string)
        texts = tf.strings.regex_replace(texts, self._control, "")
        texts = tf.strings.regex_replace(texts, self._space, " ")
        if self._cjk is not None:
            texts = tf.strings.regex_replace(texts, f"({self._cjk})", r" \1 ")
        if self._case is not None:
            chars = tf.strings.unicode_split(
                texts, "UTF-8", errors="replace", replacement_char=0xFFFD
            )
            found = self._case.lookup(chars.flat_values)
            chars = chars.with_flat_values(
                tf.where(tf.equal(found, _MISSING), chars.flat_values, found)
            )
            texts = tf.strings.reduce_join(chars, axis=-1)
        texts = tf.strings.regex_replace(texts, f"({self._punct})", r" \1 ")
        return tf.strings.split(texts)

    def ids(self, texts) -> tf.RaggedTensor:
        """Token ids without special tokens: ``string[N]`` -> ragged ``int64[N, tokens]``."""
        words = self.words(texts)
        pieces = self._pieces(words.flat_values)
        return tf.RaggedTensor.from_row_splits(pieces, words.row_splits).merge_dims(1, 2)

    def _pieces(self, words: tf.Tensor) -> tf.RaggedTensor:
        """Step 5 for a flat ``string[W]``: ragged ``int64[W, pieces]``."""
        n = tf.size(words)
        length = tf.strings.length(words, unit="UTF8_CHAR")
        too_long = length > MAX_WORD_CHARS
        width = tf.minimum(tf.reduce_max(tf.concat([length, [1]], 0)), MAX_WORD_CHARS)
        tries = tf.range(width, 0, -1)  # longest first
        tiled = tf.tile(words[:, None], [1, width])
        start = tf.zeros_like(length)
        done = tf.logical_or(too_long, tf.equal(length, 0))
        failed = too_long
        out = tf.fill([n, 0], tf.constant(-1, tf.int64))

        def body(start, done, failed, out):
            subs = tf.strings.substr(
                tiled,
                tf.tile(start[:, None], [1, width]),
                tf.tile(tries[None, :], [n, 1]),
                unit="UTF8_CHAR",
            )
            subs = tf.where(start[:, None] > 0, self.suffix + subs, subs)
            found = self._vocab.lookup(subs)
            fits = tf.logical_and(found >= 0, start[:, None] + tries[None, :] <= length[:, None])
            first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
            hit = tf.reduce_any(fits, axis=1)
            active = tf.logical_not(done)
            piece = tf.gather(found, first, batch_dims=1)
            out = tf.concat([out, tf.where(tf.logical_and(active, hit), piece, -1)[:, None]], 1)
            failed = tf.logical_or(failed, tf.logical_and(active, tf.logical_not(hit)))
            start = tf.where(tf.logical_and(active, hit), start + tf.gather(tries, first), start)
            done = tf.logical_or(done, tf.logical_or(start >= length, failed))
            return start, done, failed, out

        _, _, failed, out = tf.while_loop(
            lambda start, done, failed, out: tf.logical_not(tf.reduce_all(done)),
            body,
            (start, done, failed, out),
            shape_invariants=(start.shape, done.shape, failed.shape, tf.TensorShape([None, None])),
        )
        out = tf.concat([out, tf.fill([n, 1], tf.constant(-1, tf.int64))], 1)  # >= 1 column
        unk = tf.concat(
            [
                tf.fill([n, 1], tf.constant(self.unk_id, tf.int64)),
                tf.fill([n, tf.shape(out)[1] - 1], tf.constant(-1, tf.int64)),
            ],
            1,
        )
        out = tf.where(failed[:, None], unk, out)
        return tf.RaggedTensor.from_tensor(out, padding=tf.constant(-1, tf.int64))

    def pack(self, ids: tf.RaggedTensor, sequence_length: int) -> dict[str, tf.Tensor]:
        """``[CLS] ids [SEP]``, cut and padded to ``sequence_length``: the backbone's inputs."""
        ids = ids[:, : sequence_length - 2]
        rows = ids.nrows()
        ids = tf.concat(
            [
                tf.fill([rows, 1], tf.constant(self.cls_id, ids.dtype)),
                ids,
                tf.fill([rows, 1], tf.constant(self.sep_id, ids.dtype)),
            ],
            axis=1,
        )
        shape = [None, sequence_length]
        token_ids = tf.cast(ids.to_tensor(self.pad_id, shape=shape), tf.int32)
        mask = tf.ones_like(ids, tf.bool).to_tensor(False, shape=shape)
        return {
            "token_ids": token_ids,
            "padding_mask": mask,
            "segment_ids": tf.zeros_like(token_ids),
        }

    def __call__(self, texts, sequence_length: int) -> dict[str, tf.Tensor]:
        return self.pack(self.ids(texts), sequence_length)


def pad_rows(
    rows: list[np.ndarray],
    sequence_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    width: int | None = None,
) -> dict[str, np.ndarray]:
    """:meth:`WordPiece.pack` in numpy, for rows tokenised once: padded to ``width`` (at most
    ``sequence_length``; None: the longest row)."""
    cut = [r[: sequence_length - 2] for r in rows]
    width = width or (max((len(r) for r in cut), default=0) + 2)
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros_like(ids, bool)
    for i, r in enumerate(cut):
        ids[i, 0], ids[i, 1 : len(r) + 1], ids[i, len(r) + 1] = cls_id, r, sep_id
        mask[i, : len(r) + 2] = True
    return {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
