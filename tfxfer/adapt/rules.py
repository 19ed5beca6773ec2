"""What domain adaptation cannot run, refused before any data is read, each with the rule and
the fix (:func:`check`)."""

from __future__ import annotations

from tfxfer.config import Config, adapt_terms
from tfxfer.errors import UserError
from tfxfer.generative import synthetic


def check(cfg: Config) -> None:
    """Refuses configs that domain adaptation cannot run, with the rule and the fix."""
    synthetic.refuse(cfg)
    if not cfg.adapt.target:
        raise UserError(
            "domain adaptation needs a target domain",
            got="adapt.target unset",
            fix="pass --target DATA (a built-in name, a labelled folder, or a "
            "folder of unlabelled images)",
        )
    if cfg.tasks or cfg.mixup or cfg.cutmix or cfg.class_weight != "none":
        raise UserError(
            "domain adaptation trains one label head, without MixUp, CutMix or class weights",
            got=dict(
                tasks=len(cfg.tasks),
                mixup=cfg.mixup,
                cutmix=cfg.cutmix,
                class_weight=cfg.class_weight,
            ),
            fix="drop tasks, and set mixup=0, cutmix=0, class_weight=none",
        )
    auto = [i for i, p in enumerate(cfg.phases) if p.lr == "auto"]
    if auto:
        raise UserError(
            "the learning-rate finder (lr=auto) runs in the scenario recipes, not in "
            "domain adaptation",
            got=[f"phases.{i}.lr=auto" for i in auto],
            fix="give a number, e.g. --set phases.0.lr=0.01 (find one with tfxfer "
            "lr-find on the source data)",
        )
    if cfg.prune.sparsity:
        raise UserError(
            "pruning is not available in domain adaptation",
            got=cfg.prune.sparsity,
            fix="set prune.sparsity=0 (prune the adapted model with another recipe)",
        )
    if any(p.early_stopping for p in cfg.phases):
        raise UserError(
            "early_stopping is not available in domain adaptation: the source's "
            "validation loss does not tell when the target is best",
            got=[p.early_stopping for p in cfg.phases],
            fix="set phases.N.early_stopping=0 and choose the epochs",
        )
    adversary = adapt_terms(cfg.adapt.method).adversary
    if adversary is not None and all(p.trainable == "head" for p in cfg.phases):
        raise UserError(
            f"{adversary.upper()} adapts the features, and every phase trains the head only",
            got=[p.trainable for p in cfg.phases],
            fix="set phases.0.trainable=all (or partial), or --method source_only",
        )
