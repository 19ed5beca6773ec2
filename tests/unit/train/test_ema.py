"""EMA of the weights (``phases.N.ema``, Keras's optimizer option ``use_ema``): the weights a
phase ends with are the average, against numpy and against the optimizer's own; a resumed phase
keeps its average; what EMA cannot serve is refused in one line."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from tfxfer.config import Phase
from tfxfer.errors import UserError
from tfxfer.recipes import small_different, small_similar
from tfxfer.train import checkpoint, optim


def test_a_phase_ends_with_the_numpy_average_of_its_steps():
    """avg_1 = w_1, avg_t = m avg_(t-1) + (1 - m) w_t over the raw weights after each step,
    through tfxfer's optimizer (per-variable rates), replaced into the model when fit ends."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    phase = Phase(name="p", trainable="all", epochs=1, optimizer="sgd", lr=0.1, ema=0.9)
    model.compile(optim.make_optimizer(phase, steps_per_epoch=5), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)).astype("float32"), rng.normal(size=(20, 3)).astype("float32")
    raw = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: raw.append([w.numpy() for w in model.weights])
    )
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    assert len(raw) == 5
    average = raw[0]
    for step in raw[1:]:
        average = [0.9 * a + 0.1 * w for a, w in zip(average, step)]
    for got, want, last in zip(model.weights, average, raw[-1]):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-7)
        assert not np.allclose(got.numpy(), last)  # the raw weights were replaced


def _cfg(folder, tmp_path, start_weights, epochs=(1, 2)):
    from conftest import START_FAMILY

    return small_different.CONFIG.replace(
        data=str(folder),
        weights=start_weights[0],
        backbone=START_FAMILY,
        image_size=32,
        batch_size=8,
        train_per_class=None,
        feature_views=1,
        verbose=0,
        output=str(tmp_path / "out"),
        phases=[
            {"name": "head", "trainable": "head", "epochs": epochs[0], "lr": 1e-3, "ema": 0.5},
            {"name": "ft", "trainable": "partial", "epochs": epochs[1], "lr": 1e-3, "ema": 0.5},
        ],
    )


class _Crash(Exception):
    pass


@pytest.mark.integration
def test_the_saved_model_holds_the_average_and_a_resumed_phase_keeps_it(
    image_folder, tmp_path, start_weights, monkeypatch
):
    """A run is killed in the fine-tuning phase's second epoch: the average its backup holds
    (from the first) is the one the resumed phase goes on with, not a fresh one taken from the
    weights; and the run's model.keras holds what the optimizer averaged, not the raw weights."""
    cfg = _cfg(image_folder, tmp_path, start_weights, epochs=(1, 3))
    log_epoch, save, backups = (
        checkpoint.RunState.log_epoch,
        checkpoint._FiniteBackup._save_model,
        [],
    )

    def backed_up(self):  # the model here is the one being fitted, with its optimizer
        save(self)
        backups.append(
            (
                [a.numpy() for a in _average(self.model)],
                [w.numpy() for w in self.model.trainable_weights],
            )
        )

    def crash_in_the_second_finetune_epoch(self, model, key, epoch, logs):
        log_epoch(self, model, key, epoch, logs)
        if key == "1" and epoch == 1:  # before this epoch's backup: the first one's is kept
            raise _Crash("killed")

    monkeypatch.setattr(checkpoint._FiniteBackup, "_save_model", backed_up)
    monkeypatch.setattr(checkpoint.RunState, "log_epoch", crash_in_the_second_finetune_epoch)
    with pytest.raises(_Crash):
        small_different.run(cfg)
    monkeypatch.undo()
    kept, raw = backups[-1]

    load, restored, finals = checkpoint._FiniteBackup._load_model, [], []

    def load_and_record(self):
        load(self)
        restored.append([a.numpy() for a in _average(self.model)])

    real_finalize = keras.optimizers.Optimizer.finalize_variable_values

    def finalize(self, var_list):
        averages = self._model_variables_moving_average
        finals.append({v.path: a.numpy() for v, a in zip(var_list, averages)})
        return real_finalize(self, var_list)

    monkeypatch.setattr(checkpoint._FiniteBackup, "_load_model", load_and_record)
    monkeypatch.setattr(keras.optimizers.Optimizer, "finalize_variable_values", finalize)
    result = small_different.run(cfg)  # the same command: resumes the fine-tuning at epoch 2
    assert len(result.history[1]["history"]["loss"]) == 3
    moved = 0
    for got, want, weights in zip(restored[-1], kept, raw):
        np.testing.assert_array_equal(got, want)
        moved += not np.allclose(want, weights)
    assert moved > 10  # the average is not the raw weights: a fresh one would equal them
    assert len(finals) == 1  # the resumed phase's fit
    saved = keras.saving.load_model(str(tmp_path / "out" / "model.keras"), safe_mode=True)
    by_name = {_layer_and_name(w.path): w.numpy() for w in saved.weights}
    assert len(finals[0]) > 10  # the partial scope's variables, the head's among them
    for path, average in finals[0].items():
        np.testing.assert_array_equal(by_name[_layer_and_name(path)], average, err_msg=path)


def _layer_and_name(path: str) -> str:
    """``layer/variable``: the head's layers sit under another model in the fitted graph."""
    return "/".join(path.split("/")[-2:])


def _average(model):
    return model.optimizer._model_variables_moving_average


@pytest.mark.parametrize(
    "changes, words",
    [
        (["phases.1.ema=1.0"], "ema (phase 'finetune') must be in [0, 1)"),
        (["phases.1.ema=0.99", "phases.1.early_stopping=2"], "ema and early_stopping cannot"),
        (["phases.1.ema=0.99", "prune.sparsity=0.5"], "ema cannot average a phase that prunes"),
    ],
)
def test_what_ema_cannot_serve_is_refused_in_one_line(changes, words):
    from tfxfer.recipes import large_similar

    with pytest.raises(UserError, match="^" + re.escape(words)):
        large_similar.CONFIG.override(changes)
    assert small_similar.CONFIG.override(["phases.0.ema=0.99"]).phases[0].ema == 0.99


def test_a_phase_too_short_for_its_momentum_is_warned_with_the_momentum_that_fits(caplog):
    """Keras's average starts from the first step's weights: over N steps they keep ema**N of
    it. Warned above 1%, with 1 - 10/N, which keeps them under 0.01%."""
    with caplog.at_level("WARNING", logger="tfxfer"):
        share = optim.warn_short_average(Phase(name="ft", ema=0.999), 465)
    assert share == pytest.approx(0.999**465) and share > 0.6
    assert "keeps 63% of the first step's weights" in caplog.text
    assert "--set phases.ft.ema=0.9785" in caplog.text and 0.9785**465 < 1e-4
    caplog.clear()
    with caplog.at_level("WARNING", logger="tfxfer"):
        optim.warn_short_average(Phase(name="ft", ema=0.99), 5000)  # 0.99**5000: 1.5e-22
    assert not caplog.text
