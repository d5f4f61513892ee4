"""Block options through the command line: `dit train` records them, the checkpoint, its
safetensors export and `dit convert` outputs carry them, `dit sample` rebuilds the model from
them, formats that cannot describe them are refused, and older checkpoints still resume."""

import pytest
import torch
from safetensors import safe_open

from dit.cli.main import main
from dit.config import BLOCK_OPTIONS
from dit.weights.formats import load_model
from dit.runtime.checkpoint import ema_export_path, load_checkpoint, save_checkpoint

from tests.helpers.sample import sample_argv
from tests.helpers.train import final_state, make_image_folder, train_args

pytestmark = pytest.mark.usefixtures("one_thread")
OPTIONS = ["--norm", "rms", "--qk-norm", "rms", "--mlp", "swiglu", "--rope", "--long-skip"]
EXPECTED = dict(norm="rms", qk_norm="rms", mlp="swiglu", rope=True, long_skip=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("opts")
    data = make_image_folder(root / "data")
    assert main(train_args(data, root / "run", "--max-steps", "2", *OPTIONS)) == 0
    return root


def test_options_travel_with_checkpoint_export_and_conversion(run, tmp_path):
    ckpt = sorted((run / "run" / "checkpoints").glob("*.pt"))[-1]
    state = load_checkpoint(ckpt)
    # every block option is recorded, the ones left at the paper's value (MeanFlow's interval embedding) too
    assert {k: state["config"]["model"][k] for k in BLOCK_OPTIONS} == {**EXPECTED, "interval_embedding": False}
    assert any(k.startswith("skip_linears.") for k in state["ema"])
    for path in (ckpt, ema_export_path(ckpt)):
        model = load_model(path).model
        assert model.config.options() == EXPECTED, path
        assert torch.equal(model.state_dict()["skip_linears.0.weight"], state["ema"]["skip_linears.0.weight"])
    st = tmp_path / "w.safetensors"
    assert main(["convert", str(ckpt), str(st)]) == 0
    assert load_model(st).model.config.options() == EXPECTED
    with safe_open(str(st), "pt") as f:
        assert '"rope": true' in f.metadata()["model"]
    assert main(sample_argv(st, tmp_path / "s.npz", "--num-samples", "2")) == 0


@pytest.mark.parametrize("to", ["official", "diffusers"])
def test_formats_without_a_config_refuse_a_model_with_options(run, tmp_path, capsys, to):
    ckpt = sorted((run / "run" / "checkpoints").glob("*.pt"))[-1]
    assert main(["convert", str(ckpt), str(tmp_path / "out"), "--to", to]) == 2
    err = capsys.readouterr().err
    assert "block options" in err and "\n" not in err.strip()
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_from_before_the_options_still_resumes(tmp_path):
    data = make_image_folder(tmp_path / "data")
    folder = tmp_path / "run"
    assert main(train_args(data, folder, "--max-steps", "2")) == 0
    ckpt = sorted((folder / "checkpoints").glob("*.pt"))[-1]
    state = load_checkpoint(ckpt)
    for k in BLOCK_OPTIONS:  # as written before these fields existed
        del state["config"]["model"][k]
    save_checkpoint(state, ckpt)
    assert main(train_args(data, folder, "--max-steps", "3", "--resume", "auto")) == 0
    assert final_state(folder)["step"] == 3
