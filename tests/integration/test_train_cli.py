"""`dit train` end to end on a generated image folder: loss falls, exact resume, run-folder safety."""

import csv
import json

import pytest
import torch

from dit.cli.main import main
from dit.runtime.checkpoint import load_checkpoint

from tests.helpers.train import assert_states_close, final_state, train_args

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trains_end_to_end_and_loss_falls(data, tmp_path):
    run = tmp_path / "run"
    argv = train_args(
        data,
        run,
        "--max-steps",
        "40",
        "--log-every",
        "10",
        "--ckpt-every",
        "20",
        "--lr",
        "3e-3",
        "--tensorboard",
        batch=8,
    )
    assert main(argv) == 0
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    for key in ("loss", "mse", "vb", "steps_per_sec", "images_per_sec"):
        assert key in rows[0]
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    # A zero-initialised output layer starts at mse ≈ 1 (ε has unit variance); training must cut it.
    assert last < 0.5 * first, (first, last)  # measured: 0.88 → 0.15
    assert (run / "tb").is_dir() and any((run / "tb").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["train"]["max_steps"] == 40 and info["git"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "0000020.ema.safetensors",
        "0000020.ema.safetensors.sha256",
        "0000020.pt",
        "0000020.pt.sha256",
        "0000040.ema.safetensors",
        "0000040.ema.safetensors.sha256",
        "0000040.pt",
        "0000040.pt.sha256",
    ]


def test_checkpoint_is_self_describing_and_ema_export_loads_strict(data, tmp_path):
    from safetensors.torch import load_file

    from dit.config import ModelConfig
    from dit.models import build_model

    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "3", "--ema-warmup")) == 0
    state = final_state(run)
    for key in ("model", "ema", "opt", "scaler", "step", "epoch", "batch_in_epoch", "rng", "config"):
        assert key in state
    assert set(state["config"]) == {"model", "diffusion", "train", "data", "sampling"}
    assert state["step"] == 3 and state["batch_in_epoch"] == 3 and state["ema_updates"] == 3
    model = build_model(ModelConfig.from_dict(state["config"]["model"]))
    model.load_state_dict(state["model"], strict=True)
    ema = load_file(str(run / "checkpoints" / "0000003.ema.safetensors"))
    model.load_state_dict(ema, strict=True)
    for k, v in ema.items():
        assert torch.equal(v, state["ema"][k])
    assert not any(k.startswith("module.") for k in ema)


def test_stop_and_resume_auto_equals_straight_run(data, tmp_path):
    """4 + 4 steps (crossing the epoch boundary at 6) with --resume auto == 8 straight steps, bitwise."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--log-every", "2", "--ckpt-every", "100", "--ema-warmup", "--ema-decay", "0.9"]
    assert main(train_args(data, straight, "--max-steps", "8", *common)) == 0
    assert main(train_args(data, split, "--max-steps", "4", *common)) == 0
    assert load_checkpoint(split / "checkpoints" / "0000004.pt")["batch_in_epoch"] == 4  # stopped mid-epoch
    assert main(train_args(data, split, "--max-steps", "8", "--resume", "auto", *common)) == 0
    a, b = final_state(straight), final_state(split)
    assert a["step"] == b["step"] == 8 and a["epoch"] == b["epoch"] == 1
    assert assert_states_close(a, b, atol=0.0) == 0.0
    rows = list(csv.DictReader(open(split / "metrics.csv")))  # the resumed run appends to the same log
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]


@pytest.mark.parametrize("ema", [["--ema-type", "halflife", "--ema-halflife-kimg", "0.02"], ["--ema-type", "power"]])
def test_short_run_ema_and_beta2_resume_equals_straight_run_and_are_recorded(data, tmp_path, ema):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--log-every", "2", "--ckpt-every", "100", "--betas", "0.9", "0.95", *ema]
    assert main(train_args(data, straight, "--max-steps", "6", *common)) == 0
    assert main(train_args(data, split, "--max-steps", "3", *common)) == 0
    assert main(train_args(data, split, "--max-steps", "6", "--resume", "auto", *common)) == 0
    a, b = final_state(straight), final_state(split)
    assert a["ema_updates"] == b["ema_updates"] == 6
    assert assert_states_close(a, b, atol=0.0) == 0.0
    train_cfg = a["config"]["train"]
    assert tuple(train_cfg["betas"]) == (0.9, 0.95) and train_cfg["ema_type"] == ema[1]
    assert a["opt"]["param_groups"][0]["betas"] == (0.9, 0.95)
    # the EMA moved away from the initial weights (a constant 0.9999 EMA would not have)
    first = build_first_model(a)
    assert any(not torch.allclose(first[k], v) for k, v in a["ema"].items())


def build_first_model(state: dict) -> dict:
    """The initial weights of a run (its seed only decides them)."""
    from dit.config import ModelConfig
    from dit.models import build_model

    torch.manual_seed(state["config"]["train"]["seed"])
    return build_model(ModelConfig.from_dict(state["config"]["model"])).state_dict()


@pytest.mark.parametrize("change", [["--ema-type", "power"], ["--ema-decay", "0.99"], ["--betas", "0.9", "0.99"]])
def test_resume_refuses_other_ema_or_optimiser_settings(data, tmp_path, capsys, change):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "2")) == 0
    assert main(train_args(data, run, "--max-steps", "4", "--resume", "auto", *change)) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and change[0] in err


def test_resume_reports_a_changed_lr_or_clip_in_one_line(data, tmp_path, capfd):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "2", "--lr", "1e-3")) == 0
    capfd.readouterr()
    assert (
        main(train_args(data, run, "--max-steps", "4", "--resume", "auto", "--lr", "5e-4", "--grad-clip", "0.5")) == 0
    )
    out = capfd.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if "settings changed" in line]
    assert len(lines) == 1, lines
    assert "--lr 0.001 -> 0.0005" in lines[0] and "--grad-clip None -> 0.5" in lines[0]
    assert load_checkpoint(run / "checkpoints" / "0000004.pt")["config"]["train"]["lr"] == 5e-4
    # resumed again with the checkpoint's own settings: nothing to report
    assert (
        main(train_args(data, run, "--max-steps", "5", "--resume", "auto", "--lr", "5e-4", "--grad-clip", "0.5")) == 0
    )
    assert "settings changed" not in "".join(capfd.readouterr())


def test_refuses_a_folder_holding_another_run(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "2")) == 0
    before = (run / "checkpoints" / "0000002.pt").read_bytes()
    assert main(train_args(data, run, "--max-steps", "4")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoints" / "0000002.pt").read_bytes() == before


def test_resume_refuses_a_checkpoint_of_another_model(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "2")) == 0
    argv = train_args(data, run, "--max-steps", "4", "--resume", "auto")
    argv[argv.index("--hidden-size") + 1] = "64"
    assert main(argv) == 2
    assert "another model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max-steps", "2", "--global-batch-size", "100"], "fewer than --global-batch-size"),
        ([], "no budget"),
        (["--max-steps", "2", "--depth", "2", "--patch-size", "3"], None),
    ],
)
def test_bad_configuration_is_one_line_exit_2(data, tmp_path, capsys, flags, message):
    argv = train_args(data, tmp_path / "run", *flags)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    if message:
        assert message in err


def test_epoch_budget_and_unconditional(data, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--epochs", "1", "--unconditional", "--log-every", "3")) == 0
    state = final_state(run)
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (6, 1, 0)  # 24 images / batch 4
    assert state["config"]["model"]["num_classes"] == 0
    assert not any(k.startswith("y_embedder") for k in state["model"])


def test_time_budget_stops_cleanly_with_a_checkpoint(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-minutes", "0.001", "--log-every", "1000")) == 0
    assert "(max-minutes)" in capsys.readouterr().out
    assert final_state(run)["step"] >= 0


def test_logger_on_other_ranks_writes_nothing(tmp_path):
    from dit.runtime.logging import RunLogger

    log = RunLogger(tmp_path / "r1", enabled=False)
    log.info("x")
    log.log_metrics(1, {"loss": 1.0})
    log.close()
    assert not (tmp_path / "r1").exists()


def test_trains_without_tensorboard_installed_and_asking_for_it_is_one_line(data, tmp_path):
    """TensorBoard is an extra: a run without it writes metrics.csv; --tensorboard without it: one error line."""
    import subprocess
    import sys

    block = "import sys; sys.modules['tensorboard'] = None; sys.modules['torch.utils.tensorboard'] = None\n"
    code = block + "from dit.cli.main import main; sys.exit(main(sys.argv[1:]))"
    run = tmp_path / "run"
    argv = train_args(data, run, "--max-steps", "2", "--log-every", "1")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in csv.DictReader(open(run / "metrics.csv"))] == ["1", "2"] and not (run / "tb").exists()
    asked = subprocess.run(
        [sys.executable, "-c", code, *train_args(data, tmp_path / "tb_run", "--max-steps", "1", "--tensorboard")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 2 and asked.stderr.strip().splitlines()[-1].startswith(
        "error: TensorBoard logging needs"
    )
    assert "dit[tensorboard]" in asked.stderr
