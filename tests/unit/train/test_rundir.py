"""The output directory: overwrite never mixes two runs' files, resume rules, the lock."""

import json
import subprocess
import sys
import textwrap

import pytest

from tfxfer.config import Config, Phase
from tfxfer.errors import UserError
from tfxfer.train import rundir

OLD_ARTEFACTS = (
    "saved_model",
    "model.keras",
    "metrics.json",
    "history.json",
    "data_report.json",
    "curves.png",
    "confusion_matrix.png",
)


@pytest.mark.integration
def test_overwrite_never_leaves_files_of_two_runs_side_by_side(image_folder, tmp_path, monkeypatch):
    from tfxfer.deploy import export
    from tfxfer.train import loop as train

    out = tmp_path / "run"
    cfg = Config(
        data=str(image_folder),
        backbone="MobileNet025",
        weights=None,
        image_size=32,
        verbose=0,
        output=str(out),
        phases=(Phase(epochs=1),),
    )
    export.save_run(train.run(cfg), cfg)
    assert all((out / name).exists() for name in OLD_ARTEFACTS)

    seen = []
    real = rundir.write_json

    def spy(path, obj):  # the moment the new run's config.json lands
        seen.append(sorted(p.name for p in out.iterdir()))
        real(path, obj)

    monkeypatch.setattr(rundir, "write_json", spy)
    failing = cfg.replace(data=str(tmp_path / "missing"), overwrite=True, seed=9)
    with pytest.raises(UserError, match="data must be an existing directory"):
        train.run(failing)  # fails after the directory was taken over
    assert seen and not set(seen[0]) & set(OLD_ARTEFACTS + ("checkpoints",)), seen[0]
    left = {p.name for p in out.iterdir()}
    assert not left & set(OLD_ARTEFACTS), left
    assert json.loads((out / "config.json").read_text())["seed"] == 9
    rundir.acquire(out)  # and the failed run released its lock
    rundir.release(out)


def test_resume_refuses_changes_outside_the_rates_of_unfinished_phases(tmp_path):
    out = tmp_path / "r"
    base = Config(output=str(out), phases=(Phase(name="a", epochs=2), Phase(name="b", epochs=2)))
    rundir.release(rundir.prepare(base))
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "phase0.done.json").write_text("{}")
    ok = base.override(["phases.1.lr=1e-5", "phases.1.schedule=cosine"]).replace(resume=True)
    rundir.release(rundir.prepare(ok))
    assert json.loads((out / "config.json").read_text())["phases"][1]["lr"] == 1e-5
    for change, named in (
        ("phases.0.lr=1e-5", "phases.0.lr (phase 0 is completed)"),
        ("phases.1.epochs=5", "phases.1.epochs"),
        ("seed=3", "seed"),
    ):
        with pytest.raises(
            UserError,
            match=r"--resume keeps completed phases.*"
            + named.replace("(", r"\(").replace(")", r"\)"),
        ):
            rundir.prepare(ok.override([change]))
    with pytest.raises(UserError, match="different run.*--resume"):
        rundir.prepare(base.override(["phases.1.lr=3e-5"]))  # without --resume: refused
    with pytest.raises(UserError, match="exclude each other"):
        base.replace(resume=True, overwrite=True)


def test_a_run_folder_written_before_augment_became_a_table_is_the_same_run(tmp_path):
    out = tmp_path / "old"
    cfg = Config(output=str(out), augment="standard")
    old = cfg.to_dict()
    old["augment"] = "standard"  # how config.json stored it then, with no generative table
    del old["generative"]
    out.mkdir()
    (out / "config.json").write_text(json.dumps(old))
    (out / "checkpoints").mkdir()
    rundir.release(rundir.prepare(cfg))  # the same run: resumes, nothing cleared
    assert (out / "checkpoints").is_dir()
    with pytest.raises(UserError, match="different run.*augment"):
        rundir.prepare(cfg.replace(augment="strong"))


@pytest.mark.integration
def test_lock_is_reentrant_in_one_process_and_names_the_holder_in_another(tmp_path):
    out = tmp_path / "l"
    out.mkdir()
    rundir.acquire(out)
    rundir.acquire(out)  # a notebook re-running into its own directory
    code = textwrap.dedent(f"""
        from pathlib import Path
        from tfxfer.train import rundir
        from tfxfer.errors import UserError
        try:
            rundir.acquire(Path({str(out)!r}))
        except UserError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    import os

    assert f"locked by process {os.getpid()}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    rundir.release(out)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "locked" not in proc.stdout
