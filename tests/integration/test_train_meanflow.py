"""`dit train --objective meanflow` end to end: what the checkpoint records, exact resume, 2 ranks = 1, sampling."""

import pytest
import torch

from dit.cli.main import main
from dit.diffusion import build_objective
from dit.diffusion.meanflow import sample
from dit.models import build_model
from dit.config import DiffusionConfig, ModelConfig

from tests.helpers.torchrun import run_torchrun
from tests.helpers.train import assert_states_close, final_state, make_image_folder, train_args

pytestmark = pytest.mark.usefixtures("one_thread")

MEANFLOW = ["--recipe", "fast", "--objective", "meanflow", "--precision", "fp32"]


def test_meanflow_run_records_its_objective_and_the_interval_embedding_and_samples(data, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "3", "--log-every", "1", *MEANFLOW)) == 0
    state = final_state(run)
    diffusion, model = state["config"]["diffusion"], state["config"]["model"]
    assert diffusion["objective"] == "meanflow" and diffusion["meanflow_share"] == 0.25
    assert model["interval_embedding"] is True and model["learn_sigma"] is False
    assert any(k.startswith("interval_embedder.") for k in state["model"])
    # the interval embedding learns: its zero-initialised output layer moved
    assert state["model"]["interval_embedder.mlp.2.weight"].abs().max() > 0
    net = build_model(ModelConfig.from_dict(model))
    net.load_state_dict(state["ema"])
    net.eval()
    objective = build_objective(DiffusionConfig.from_dict(diffusion))
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1])
    one = sample(net, noise, torch.tensor([1.0, 0.0]), {"y": y}, prediction=objective.prediction)
    two = sample(net, noise, torch.tensor([1.0, 0.5, 0.0]), {"y": y}, prediction=objective.prediction)
    assert one.shape == two.shape == noise.shape and bool(torch.isfinite(one).all() and torch.isfinite(two).all())


def test_resume_equals_straight_run_for_meanflow(data, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = [*MEANFLOW, "--log-every", "2", "--ckpt-every", "100"]
    assert main(train_args(data, straight, "--max-steps", "8", *common)) == 0
    assert main(train_args(data, split, "--max-steps", "4", *common)) == 0
    assert main(train_args(data, split, "--max-steps", "8", "--resume", "auto", *common)) == 0
    a, b = final_state(straight), final_state(split)
    assert a["step"] == b["step"] == 8
    assert assert_states_close(a, b, atol=0.0) == 0.0


def test_resume_refuses_flow_for_a_meanflow_run(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(data, run, "--max-steps", "2", *MEANFLOW)) == 0
    capsys.readouterr()
    argv = train_args(data, run, "--max-steps", "4", "--resume", "auto", "--recipe", "fast", "--precision", "fp32")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "objective" in err and "meanflow" in err and "\n" not in err


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one_for_meanflow(tmp_path):
    data = make_image_folder(tmp_path / "data")
    common = ["--max-steps", "4", "--ckpt-every", "4", "--log-every", "2", "--device", "cpu", *MEANFLOW]
    assert main(train_args(data, tmp_path / "one", *common)) == 0
    run_torchrun(train_args(data, tmp_path / "two", *common))
    a, b = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert a["step"] == b["step"] == 4 and b["config"]["diffusion"]["objective"] == "meanflow"
    assert_states_close(a, b, atol=1e-6)
