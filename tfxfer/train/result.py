"""What a run returns: the trained model, its metrics and history, and a printable summary.

Example:
    >>> r = RunResult({"val_accuracy": 0.5, "correct": 1, "num_val": 2, "val_loss": 0.7}, [], 3.0,
    ...               None, {}, None)
    >>> r.summary()
    'val_accuracy=0.5000 (1/2)  val_loss=0.7000  time=3s'
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DeployData:
    """What a run's int8 LiteRT file is calibrated on, and what every LiteRT file is measured on.

    A recipe whose training data is not what it serves sets its own: domain adaptation
    calibrates on target images and measures on labelled target data; zero-shot calibrates on
    seen classes only. The default (:func:`tfxfer.deploy.export.default_deploy_data`) is the
    training and validation splits.

    Attributes:
        calibration: Images to calibrate on (a ``Split``; its labels only spread the picks over
            the classes, and may be all zeros for unlabelled images).
        val: Labelled images to measure on (a ``Split``).
        reference: The float model's accuracy on ``val``, which ``delta_vs_float`` is taken from.
        calibrated_on: What ``calibration`` is, for ``metrics.json``.
        measured_on: What ``val`` is, for ``metrics.json``.
    """

    calibration: object
    val: object
    reference: float
    calibrated_on: str
    measured_on: str


@dataclass
class RunResult:
    """What a run produced: the trained model, metrics, per-phase history, artefact paths.

    ``output`` is None on a non-chief worker; ``paths`` is filled by
    :func:`tfxfer.deploy.export.save_run`.
    """

    metrics: dict
    history: list
    seconds: float
    model: object  # tfxfer.models.model.TransferModel
    data_report: dict
    output: str | None
    paths: dict = field(default_factory=dict)
    data: object = None  # the run's ImageData
    deploy: DeployData | None = None  # LiteRT calibration and measurement, when not ``data``'s
    config: object = None  # the Config it trained with, when not the one asked for (auto)

    def summary(self) -> str:
        m = self.metrics
        text = (
            f"val_accuracy={m['val_accuracy']:.4f} ({m['correct']}/{m['num_val']})  "
            f"val_loss={m['val_loss']:.4f}  time={self.seconds:.0f}s"
        )
        for name, t in m.get("tasks", {}).items():
            text += (
                f"\n  task {name}: val_accuracy={t['val_accuracy']:.4f} "
                f"({t['correct']}/{t['num_val']})"
            )
        for name, t in {k: v for k, v in m.get("tta", {}).items() if isinstance(v, dict)}.items():
            text += (
                f"\n  tta={m['tta']['mode']} ({name}): val_accuracy={t['val_accuracy']:.4f} "
                f"(without: {t['val_accuracy_without_tta']:.4f})"
            )
        if "adapt" in m:
            a = m["adapt"]
            text += f"\n  {a['method']} to target {a['target']}: "
            text += (
                f"target_accuracy={a['target_accuracy']:.4f} ({a['num_target_val']} images), "
                f"domain classifier {a['val_domain_accuracy']:.4f} held out (0.5: "
                "indistinguishable)"
                if "target_accuracy" in a
                else f"no labelled target data; domain classifier {a['train_domain_accuracy']:.4f}"
                " in training"
            )
        if "zero_shot" in m:
            z = m["zero_shot"]
            text += f"\n  zero-shot, unseen {', '.join(z['unseen'])}:"
            for name in ("dap", "eszsl"):
                if name in z:
                    r = z[name]
                    text += (
                        f"\n    {name}: ZSL {r['zsl_accuracy']:.4f} (chance "
                        f"{r['zsl_chance']:.4f}); GZSL seen {r['gzsl_seen']:.4f}, unseen "
                        f"{r['gzsl_unseen']:.4f}, H {r['gzsl_h']:.4f}"
                    )
        if "prune" in m:
            text += f"\n  pruned: {m['prune']['sparsity']:.1%} of prunable weights are zero"
        for variant, e in m.get("litert", {}).items():
            if "error" in e:
                text += f"\n  LiteRT {variant}: FAILED ({e['error']})"
                continue
            text += (
                f"\n  LiteRT {variant}: val_accuracy={e['val_accuracy']:.4f} "
                f"({e['delta_vs_float']:+.4f}), {e['bytes'] / 1e6:.2f} MB, {e['file']}"
            )
        if "auto" in m:
            text += f"\n  auto chose {m['auto']['recipe']}: " + "; ".join(m["auto"]["reasons"][:2])
        if self.paths:
            text += (
                f"\nexported SavedModel: {self.paths['saved_model']}\n"
                f"Keras model: {self.paths['keras']}\nmetrics: {self.paths['metrics']}"
            )
        return text
