"""What distillation cannot run, refused before the teacher is loaded or any data is read, each
with the rule and the fix (:func:`check`). Imports no TensorFlow."""

from __future__ import annotations

from tfxfer.config import Config
from tfxfer.errors import UserError


def check(cfg: Config) -> None:
    """Refuses image settings the distillation trainer would otherwise ignore."""
    ignored = {
        "tasks": len(cfg.tasks),
        "mixup": cfg.mixup,
        "cutmix": cfg.cutmix,
        "class_weight": cfg.class_weight if cfg.class_weight != "none" else 0,
        "augment.synthetic_ratio": cfg.augment.synthetic_ratio,
        "wise_ft": cfg.wise_ft or 0,
        "data_service": cfg.data_service,
    }
    set_ = {k: v for k, v in ignored.items() if v}
    if set_:
        raise UserError(
            "distillation trains one head on the teacher's outputs, without tasks, MixUp, "
            "CutMix, class weights, GAN images, WiSE-FT or a tf.data service",
            got=set_,
            fix="drop " + ", ".join(set_) + " (they work in the scenario recipes)",
        )
    auto = [i for i, p in enumerate(cfg.phases) if p.lr == "auto" or p.early_stopping]
    if auto:
        raise UserError(
            "distillation's phases take a set learning rate and epoch count (no lr=auto, no "
            "early_stopping)",
            got=[cfg.phases[i].name for i in auto],
            fix="give a number, e.g. --set phases.all.lr=3e-4, and set phases.N.early_stopping=0",
        )
