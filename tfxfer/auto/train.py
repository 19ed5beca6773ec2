"""The ``auto`` recipe's run: plan (:mod:`tfxfer.auto.plan`), then train the chosen recipe.

The chosen recipe's config runs through the one training core (:func:`tfxfer.train.loop.run`)
on the data already read. ``auto.compare`` first runs every candidate for
``auto.compare_epochs`` epochs per phase and takes the best validation accuracy; the plan, with
the reason for each choice, goes to ``plan.json`` in the output directory.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import keras

from tfxfer.atomic import write_json
from tfxfer.auto.plan import Plan, check, chosen_config, plan, what_trains
from tfxfer.config import Config
from tfxfer.models import backbones
from tfxfer.train import loop, rundir

log = logging.getLogger("tfxfer")


def compare(
    the_plan: Plan, cfg: Config, data, candidates: dict[str, Config], extra_augment=()
) -> Plan:
    """Runs every candidate for ``auto.compare_epochs`` epochs per phase; keeps the best."""
    scores = {}
    for name, base in candidates.items():
        short = chosen_config(
            cfg.replace(auto=dataclasses.replace(cfg.auto, epochs=cfg.auto.compare_epochs)), base
        )
        short = short.replace(
            output=str(Path(cfg.output) / "compare" / name),
            overwrite=True,
            resume=False,
            export=(),
            tta="none",
        )
        log.info("auto.compare: %s, %d epoch(s) per phase", name, cfg.auto.compare_epochs)
        result = loop.run(short, extra_augment, data=data)
        rundir.release(result.output)
        scores[name] = result.metrics["val_accuracy"]
        if result.output is not None:  # the score is what is kept, not the candidate's weights
            shutil.rmtree(Path(result.output) / "checkpoints", ignore_errors=True)
    best = max(scores, key=lambda name: (scores[name], name == the_plan.recipe))
    table = ", ".join(f"{n} {a:.4f}" for n, a in scores.items())
    reason = (
        f"compare ({cfg.auto.compare_epochs} epoch(s) per phase, validation accuracy): "
        f"{table} -> {best}"
        + ("" if best == the_plan.recipe else f" (the signals chose {the_plan.recipe})")
    )
    chosen = chosen_config(cfg, candidates[best])
    reasons = the_plan.reasons[:2] + [reason, f"recipe: {best}"] + what_trains(chosen)
    return Plan(best, the_plan.signals, reasons, chosen, the_plan.thresholds, scores)


def run(cfg: Config, extra_augment=(), candidates: dict[str, Config] | None = None):
    """Plans, then trains the chosen recipe; returns its :class:`~tfxfer.train.result.RunResult`
    (``config`` set to the chosen config), or the :class:`Plan` alone for a dry run."""
    check(cfg)
    if not candidates:
        raise ValueError("auto.run needs the candidate recipes' configs")  # a bug, not a user's
    # Seeded, and measured in float32 whatever the run's precision (a policy left by an earlier
    # run in the same process must not leak in); the chosen run sets its own strategy and policy.
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy("float32")
    size = backbones.resolve_size(cfg.backbone, cfg.image_size)
    data = loop.load_data(cfg, size)
    the_plan = plan(cfg, data, size, candidates)
    if cfg.auto.dry_run:  # the command line prints the returned plan
        out = Path(cfg.output)
        if (out / "config.json").exists():  # a run lives there: its plan.json stays its own
            the_plan.reasons.append(
                f"plan.json not written: {out} holds a run; pass another --output to keep this plan"
            )
            return the_plan
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "plan.json", the_plan.to_dict())
        return the_plan
    log.info("%s", the_plan.summary())
    if cfg.auto.compare:
        the_plan = compare(the_plan, cfg, data, candidates, extra_augment)
        log.info("%s", the_plan.summary())
    result = loop.run(the_plan.config, extra_augment, data=data)
    result.config = the_plan.config
    result.metrics["auto"] = {k: v for k, v in the_plan.to_dict().items() if k != "config"}
    if result.output is not None:
        write_json(Path(result.output) / "plan.json", the_plan.to_dict())
    return result
