"""The zero-shot run: frozen backbone features, DAP and ESZSL fitted on seen classes only.

:func:`run` is the ``zero_shot`` recipe's training core:

1. reads the data and the attribute table (``zero_shot.attributes``, or the data's built-in
   table) and checks them against each other and ``zero_shot.unseen``
   (:mod:`tfxfer.zero_shot.attributes`);
2. **drops every training image of an unseen class** before anything is computed from the
   training split: the methods are fitted on features of seen-class images only;
3. extracts pooled features with the frozen backbone (ImageNet weights by default: the
   protocol of Xian et al. 2017, where every method shares fixed pretrained features);
4. fits each of ``zero_shot.methods`` (:mod:`tfxfer.zero_shot.methods`) and evaluates it on
   the validation split: ZSL over the unseen classes, generalised ZSL over all classes, both
   plain and calibrated (``gamma`` subtracted from the seen classes' scores, chosen per method
   from the seen classes' training features alone: :mod:`tfxfer.zero_shot.calibrate`);
5. returns a :class:`~tfxfer.train.result.RunResult` whose model is a plain classifier over
   **all** classes: the backbone, then one Dense layer holding ESZSL's map composed with the
   table, less its ``gamma`` on seen classes (``features @ V @ S^T - gamma``; ESZSL is fitted
   for it even when ``methods`` leaves it out), so the exported SavedModel, ``tfxfer predict``
   and LiteRT serve unseen classes like any other. Its ``val_accuracy`` is that model's
   accuracy over all classes (calibrated GZSL).

``phases`` are not used: nothing is trained by gradient descent.

Example:
    >>> from tfxfer.recipes import zero_shot  # doctest: +SKIP
    >>> unseen = {"unseen": ["Coat", "Sneaker", "Trouser"]}
    >>> result = zero_shot.run(zero_shot=unseen)  # doctest: +SKIP
    >>> result.metrics["zero_shot"]["eszsl"]["zsl_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import numpy as np

from tfxfer.config import Config
from tfxfer.data import pipeline
from tfxfer.data.sources import Split
from tfxfer.errors import UserError
from tfxfer.generative import synthetic
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import model as model_lib
from tfxfer.train import rundir, validate
from tfxfer.train.loop import load_data, start
from tfxfer.train.result import DeployData, RunResult
from tfxfer.zero_shot import attributes, calibrate
from tfxfer.zero_shot import methods as zsl

log = logging.getLogger("tfxfer")


def features(tm, split: Split, image_size: int, batch_size: int, role: str) -> np.ndarray:
    """Pooled backbone features of ``split``'s images. ``role``: ``fit`` or ``evaluate``."""
    ds = pipeline.image_dataset(split, 1, image_size, batch_size, targets=lambda y: y)
    return tm.feature_model.predict(ds.map(lambda x, y: x), verbose=0)


def load_table(cfg: Config) -> attributes.AttributeTable:
    zs = cfg.zero_shot
    return attributes.read_csv(zs.attributes) if zs.attributes else attributes.builtin(cfg.data)


def make_method(name: str, cfg: Config):
    return zsl.METHODS[name](cfg.zero_shot)


def run(cfg: Config, extra_augment=()) -> RunResult:
    """Fits and evaluates zero-shot classifiers; see the module docstring."""
    t0 = time.perf_counter()
    synthetic.refuse(cfg)
    if not cfg.zero_shot.methods:
        raise UserError(
            "zero_shot.methods must name at least one method",
            valid=sorted(zsl.METHODS),
            got=[],
            fix='pass --set zero_shot.methods=["eszsl"]',
        )
    table = load_table(cfg)  # a bad table fails before the output directory is touched
    size, _ = start(cfg)  # seeds, size and dtype policy (none left by an earlier run leaks)
    with rundir.claim(cfg) as out:
        return _run_locked(cfg, out, size, table, extra_augment, t0)


def _run_locked(cfg: Config, out, size: int, table, extra_augment, t0: float) -> RunResult:
    data = load_data(cfg, size)
    log.info("%s", data.describe())
    names = data.class_names
    for warning in attributes.check(table, names, cfg.zero_shot.unseen):
        log.warning("zero-shot: %s", warning)
    unseen = [names.index(c) for c in cfg.zero_shot.unseen]
    seen = [i for i in range(len(names)) if i not in unseen]
    seen_train = seen_split(data.train, seen)
    # fitted on seen classes, indexed 0..len(seen)-1 into their signatures
    seen_labels = np.searchsorted(seen, seen_train.labels)
    log.info(
        "zero-shot: unseen %s (their %d training images are never used); %d attributes from %s",
        [names[i] for i in unseen],
        len(data.train) - len(seen_train),
        len(table.attribute_names),
        table.source,
    )
    tm = model_lib.build(
        cfg.backbone,
        len(names),
        size,
        cfg.weights,
        "none",
        extra_augment,
        cfg.head_pooling,
        0.0,
        (),
        cfg.seed,
    )
    fit_x = features(tm, seen_train, size, cfg.batch_size, role="fit")
    val_x = features(tm, data.val, size, cfg.batch_size, role="evaluate")
    signatures = table.signatures(names)
    report, fitted, gammas = {}, {}, {}
    for name in cfg.zero_shot.methods:
        start = time.perf_counter()
        fitted[name] = make_method(name, cfg).fit(fit_x, seen_labels, signatures[seen])
        scores = fitted[name].scores(val_x, signatures)
        gammas[name], chosen = gamma_for(name, cfg, fit_x, seen_labels, signatures[seen], unseen)
        calibrated = zsl.evaluate(scores, data.val.labels, seen, unseen, gammas[name])
        report[name] = {
            **zsl.evaluate(scores, data.val.labels, seen, unseen),
            "calibrated": {
                **{k: v for k, v in calibrated.items() if k.startswith("gzsl")},
                **chosen,
            },
            "seconds": round(time.perf_counter() - start, 2),
        }
        log.info(
            "zero-shot %s: ZSL %.4f (chance %.4f); GZSL seen %.4f, unseen %.4f, H %.4f; "
            "calibrated (gamma %.4g): seen %.4f, unseen %.4f, H %.4f",
            name,
            report[name]["zsl_accuracy"],
            report[name]["zsl_chance"],
            report[name]["gzsl_seen"],
            report[name]["gzsl_unseen"],
            report[name]["gzsl_h"],
            gammas[name],
            calibrated["gzsl_seen"],
            calibrated["gzsl_unseen"],
            calibrated["gzsl_h"],
        )
    # the exported classifier: features @ V @ S^T - gamma on seen classes, from ESZSL
    if "eszsl" not in fitted:
        fitted["eszsl"] = make_method("eszsl", cfg).fit(fit_x, seen_labels, signatures[seen])
        gammas["eszsl"], _ = gamma_for("eszsl", cfg, fit_x, seen_labels, signatures[seen], unseen)
    kernel, bias = fitted["eszsl"].linear(signatures)
    bias[seen] -= gammas["eszsl"]
    tm.head.get_layer("logits").set_weights([kernel.astype("float32"), bias.astype("float32")])
    specs = tasks_lib.resolve((), names)
    metrics = validate.evaluate(tm, cfg, data, SimpleNamespace(val=val_x), specs, size)
    metrics["zero_shot"] = {
        "unseen": [names[i] for i in unseen],
        "seen": [names[i] for i in seen],
        "attributes": list(table.attribute_names),
        "table": table.source,
        "num_fit_images": int(len(seen_train)),
        "exported_method": "eszsl",
        "exported_gamma": round(gammas["eszsl"], 6),
        **report,
    }
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return RunResult(
        metrics,
        [],
        time.perf_counter() - t0,
        tm,
        data.report(),
        str(out),
        data=data,
        deploy=deploy_data(data, seen_train, metrics),
    )


def gamma_for(name, cfg: Config, fit_x, seen_labels, seen_signatures, unseen) -> tuple:
    """``(gamma, report)`` of method ``name``: ``zero_shot.calibration`` as given, or chosen
    (``"auto"``) from the seen classes' training features alone (:mod:`calibrate`)."""
    setting = cfg.zero_shot.calibration
    if setting != "auto":
        return float(setting), {"gamma": float(setting), "chosen_on": "zero_shot.calibration"}
    share = len(unseen) / (len(unseen) + len(seen_signatures))
    return calibrate.choose(
        lambda: make_method(name, cfg), fit_x, seen_labels, seen_signatures, share, cfg.seed
    )


def seen_split(train: Split, seen: list[int]) -> Split:
    """The training images of the ``seen`` classes: all that the methods, and LiteRT's
    calibration, may read."""
    keep = np.isin(train.labels, seen)
    return Split(train.images[keep], train.labels[keep])


def deploy_data(data, seen_train: Split, metrics: dict) -> DeployData:
    """int8 is calibrated on seen classes' training images only, never on an unseen image; the
    files are measured on the whole validation split, as ``val_accuracy`` is (generalised)."""
    return DeployData(
        seen_train,
        data.val,
        metrics["val_accuracy"],
        "training images of seen classes",
        "validation split, all classes",
    )


def reload_deploy_data(cfg: Config, size: int, metrics: dict) -> DeployData:
    """:func:`deploy_data` of a finished run, read again from its config (``tfxfer export``)."""
    data = load_data(cfg, size)
    seen = [data.class_names.index(c) for c in metrics["zero_shot"]["seen"]]
    return deploy_data(data, seen_split(data.train, seen), metrics)
