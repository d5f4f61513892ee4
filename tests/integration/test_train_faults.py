"""Faults during training: signals stop with a checkpoint, non-finite steps are skipped then stop."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dit.cli.main import main
from dit.runtime.checkpoint import latest_checkpoint, load_checkpoint
from dit.train import trainer as tr

from tests.helpers.train import assert_states_close, final_state, make_image_folder, train_args

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(data, tmp_path, sig):
    run = tmp_path / "run"
    argv = train_args(data, run, "--max-steps", "100000", "--log-every", "1", "--ckpt-every", "100000")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dit.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # wait until a few steps are done
            if "step 0000003" in line or time.monotonic() > deadline:
                break
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert signal.Signals(sig).name in out
    ckpt = latest_checkpoint(run / "checkpoints")
    state = load_checkpoint(ckpt)
    assert state["step"] >= 3 and ckpt.name == f"{state['step']:07d}.pt"
    # and the run continues from it
    assert main(train_args(data, run, "--max-steps", str(state["step"] + 1), "--resume", "auto")) == 0
    assert final_state(run)["step"] == state["step"] + 1


class _PoisonedDiffusion:
    """The real diffusion whose loss becomes NaN on chosen calls (0-based)."""

    def __init__(self, inner, bad_calls):
        self.inner, self.bad_calls, self.calls = inner, set(bad_calls), 0
        self.num_timesteps = inner.num_timesteps

    def training_losses(self, *args, **kwargs):
        out = self.inner.training_losses(*args, **kwargs)
        if self.calls in self.bad_calls or (-1 in self.bad_calls and self.calls >= 3):
            out = {**out, "loss": out["loss"] * float("nan")}
        self.calls += 1
        return out


def _poison(monkeypatch, bad_calls):
    real = tr.build_components

    def build(*args, **kwargs):
        source, model, model_cfg, diffusion = real(*args, **kwargs)
        return source, model, model_cfg, _PoisonedDiffusion(diffusion, bad_calls)

    monkeypatch.setattr(tr, "build_components", build)


@pytest.mark.faults
def test_one_non_finite_step_is_skipped_and_counted(data, tmp_path, monkeypatch):
    _poison(monkeypatch, bad_calls={2})  # the 3rd step's loss is NaN
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "4", "--ckpt-every", "1", "--keep-last", "0")) == 0
    states = {s: load_checkpoint(run / "checkpoints" / f"{s:07d}.pt") for s in (1, 2, 4)}
    assert not (run / "checkpoints" / "0000003.pt").exists()  # no checkpoint in a non-finite streak
    assert states[4]["skipped_steps"] == 1 and states[4]["ema_updates"] == 3
    # the optimiser took 3 steps in 4 batches: the poisoned one did not update anything
    assert {float(v["step"]) for v in states[4]["opt"]["state"].values()} == {3.0}
    assert {float(v["step"]) for v in states[2]["opt"]["state"].values()} == {2.0}
    assert all(torch.isfinite(v).all() for v in states[4]["model"].values())


@pytest.mark.faults
def test_non_finite_in_a_row_stops_naming_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, bad_calls={-1})  # every call from the 4th on
    run = tmp_path / "run"
    argv = train_args(data, run, "--max-steps", "50", "--ckpt-every", "2", "--max-bad-steps", "3")
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")][-1]
    assert err.startswith("error: the loss was non-finite for 3 steps in a row")
    assert "0000002.pt" in err
    state = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_trains_and_keeps_fp32_weights(data, tmp_path, precision):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "3", "--precision", precision)) == 0
    state = final_state(run)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0


@pytest.mark.faults
@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_reaches_the_straight_run(data, tmp_path):
    """Kill a real run (checkpointing every step, so kills land inside writes too) three times,
    resume each time with --resume auto, and end on the weights of an uninterrupted run."""
    import random

    total = 12
    common = ["--log-every", "1", "--ckpt-every", "1", "--keep-last", "2"]
    straight = tmp_path / "straight"
    assert main(train_args(data, straight, "--max-steps", str(total), *common)) == 0
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    chooser = random.Random(0)
    kills = 0
    for attempt in range(6):
        resume = ["--resume", "auto"] if attempt else []
        argv = train_args(data, run, "--max-steps", str(total), *common, *resume)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dit.cli.main", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        target = chooser.randint(1, 3)  # steps to wait for before the kill
        seen = 0
        for line in proc.stderr:
            if "saved checkpoint" in line:
                seen += 1
                if seen >= target:
                    time.sleep(chooser.random() * 0.05)  # somewhere in the next step or write
                    proc.kill()
                    kills += 1
                    break
        proc.wait(timeout=120)
        latest = latest_checkpoint(run / "checkpoints")
        load_checkpoint(latest)  # the newest complete checkpoint is intact
        if latest is not None and load_checkpoint(latest)["step"] == total and proc.returncode == 0:
            break
        if kills >= 3:
            assert main(train_args(data, run, "--max-steps", str(total), *common, "--resume", "auto")) == 0
            break
    assert kills >= 1
    a, b = final_state(straight), final_state(run)
    assert a["step"] == b["step"] == total
    assert_states_close(a, b, atol=0.0)


@pytest.mark.faults
@pytest.mark.parametrize("mode", ["skip", "fail"])
def test_unreadable_image_is_skipped_and_logged_or_named(tmp_path, mode, capsys):
    data = make_image_folder(tmp_path / "data")
    (data / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run = tmp_path / "run"
    rc = main(train_args(data, run, "--max-steps", "7", "--log-every", "7", "--on-bad-image", mode))
    if mode == "skip":  # 25 files, 7 steps of 4 cover all of them at least once
        assert rc == 0
        assert "broken.png" in (run / "bad_images.tsv").read_text()
        assert "unreadable image" in (run / "log.txt").read_text()
    else:
        assert rc == 2
        assert "broken.png" in [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")][-1]
