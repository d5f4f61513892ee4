"""`dit study` end to end on a tiny grid (2 runs, 4 steps): results, report and plots; a restart that
trains and evaluates nothing again; a run killed mid-way that resumes from its checkpoint; --plot."""

import json
import os

import pytest

from dit.cli.main import main
from dit.runtime.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow

SPEC = """
name = "tiny"
steps = 4
eval_steps = [2, 4]
image_size = 8
models = ["d1-w32-h2"]
patch_sizes = [4]
blocks = ["adaln-zero", "in-context"]
seeds = [0]
num_samples = 20
sampling_steps = 2
classifier_epochs = 1
classifier_width = 8
"""
PLOTS = ["fid_vs_steps_main.png", "fid_vs_sampling_compute.png"]


def snapshot(out):
    """mtime of every checkpoint and the recorded evaluations of every run."""
    ckpts = {str(p): p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*/train/checkpoints/*.pt"))}
    states = {d.name: json.loads((d / "state.json").read_text()) for d in sorted((out / "runs").iterdir())}
    return ckpts, states


def test_tiny_study_restart_resume_and_plot(tmp_path, capsys):
    spec, out = tmp_path / "tiny.toml", tmp_path / "study"
    spec.write_text(SPEC)
    assert main(["study", str(spec), "--out", str(out), "--jobs", "2", "--progress-every", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["block"] for r in results["runs"]] == ["adaln-zero", "in-context"]
    for r in results["runs"]:
        assert r["done"] and r["train_runs"] == 1
        assert [e["step"] for e in r["evaluations"]] == [2, 4]
        assert all(math_ok(e["fid"]) and 0 <= e["class_accuracy"] <= 1 for e in r["evaluations"])
        assert r["evaluations"][1]["train_flops"] == 4 * r["train_flops_per_step"]
    assert results["real_vs_real"]["num_images"] == 20
    for name in PLOTS + ["report.md"]:
        assert (out / name).is_file()
    assert "adaLN-Zero is the best block design" in (out / "report.md").read_text()

    # A restart trains and evaluates nothing again: same checkpoints (mtimes), same recorded evaluations.
    before = snapshot(out)
    capsys.readouterr()
    assert main(["study", str(spec), "--out", str(out)]) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().err
    assert snapshot(out) == before

    # A run killed after its step-2 checkpoint: `dit train --resume auto` continues from it, evaluates step 4.
    run = out / "runs" / "d1-w32-h2-p4-in-context-fast-s0"
    state = json.loads((run / "state.json").read_text())
    last = list_checkpoints(run / "train" / "checkpoints")[-1]
    for p in last.parent.glob(last.name.split(".")[0] + "*"):
        p.unlink()
    del state["evaluations"]["4"]
    state.update(trained=False, done=False)
    (run / "state.json").write_text(json.dumps(state))
    first = list_checkpoints(run / "train" / "checkpoints")[0]
    first_mtime = first.stat().st_mtime_ns
    assert main(["study", str(spec), "--out", str(out)]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["train_runs"] == 2 and sorted(state["evaluations"]) == ["2", "4"]
    assert first.stat().st_mtime_ns == first_mtime
    assert "--resume auto" in (run / "worker.log").read_text()

    # --plot redraws report and plots from results.json alone (the runs may be gone).
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.json").write_text((out / "results.json").read_text())
    assert main(["study", "--plot", str(copy / "results.json")]) == 0
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()
    assert sorted(os.listdir(copy)) == sorted(["results.json", "report.md", *[p.name for p in out.glob("*.png")]])


def math_ok(x):
    return x == x and abs(x) != float("inf")
