"""The golden-pixels cases of ``dit sample`` and how their files were made.

``python -m tests.reference.sample_golden`` (run once, on the code before the sampling layer was
refactored) trains two tiny pixel-space models (a Gaussian ε + learned-Σ model on the paper
recipe, a flow x-prediction model on the fast recipe), exports their raw weights (the EMA of a
20-step run is still its zero-initialised output layer, which would make every sampler agree) to
``tests/reference/data/sample_golden/*.safetensors``, and draws every case of :data:`CASES` into
``<case>.npz``. :mod:`tests.reference.test_sample_golden` redraws them: the files are the
pixels any later change of the sampling code must reproduce exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "sample_golden"
MODELS = {"gaussian": ["--recipe", "paper"], "flow": ["--recipe", "fast", "--prediction-type", "xstart"]}
COMMON = ["--precision", "fp32", "--cfg-scale", "1.5", "--seed", "11", "--num-samples", "6", "--batch-size", "4"]
COMMON += ["--device", "cpu", "--no-progress"]
INTERVAL = ["--guidance-interval", "0", "500"]
# case name → (model, extra `dit sample` flags)
CASES: dict[str, tuple[str, list[str]]] = {
    "ddpm": ("gaussian", ["--sampler", "ddpm", "--num-sampling-steps", "6"]),
    "ddim": ("gaussian", ["--sampler", "ddim", "--num-sampling-steps", "5"]),
    "ddim-eta": ("gaussian", ["--sampler", "ddim", "--num-sampling-steps", "5", "--eta", "0.5"]),
    "dpm++2m": ("gaussian", ["--sampler", "dpm++2m", "--num-sampling-steps", "5"]),
    "dpm++2m-karras": ("gaussian", ["--sampler", "dpm++2m-karras", "--num-sampling-steps", "5"]),
    "ddpm-interval": ("gaussian", ["--sampler", "ddpm", "--num-sampling-steps", "6", *INTERVAL]),
    "euler": ("flow", ["--sampler", "euler", "--num-sampling-steps", "5"]),
    "heun": ("flow", ["--sampler", "heun", "--num-sampling-steps", "4"]),
    "heun-shift": ("flow", ["--sampler", "heun", "--num-sampling-steps", "4", "--time-shift", "2"]),
    "sde": ("flow", ["--sampler", "sde", "--num-sampling-steps", "5"]),
}


def model_file(model: str) -> Path:
    return DATA / f"{model}.safetensors"


def sample_argv(case: str, out: Path) -> list[str]:
    model, extra = CASES[case]
    return ["sample", "--ckpt", str(model_file(model)), "--out", str(out), *COMMON, *extra]


def make_models(root: Path) -> None:
    from dit.cli.main import main
    from tests.helpers.train import make_image_folder, train_args

    data = make_image_folder(root / "data")
    for model, recipe in MODELS.items():
        run = root / model
        argv = train_args(data, run, *recipe, "--max-steps", "20", "--lr", "5e-3", "--precision", "fp32")
        assert main(argv) == 0
        ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
        assert main(["convert", str(ckpt), str(model_file(model)), "--weights", "model", "--overwrite"]) == 0


def main() -> None:
    from dit.cli.main import main as dit

    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        make_models(Path(tmp))
    for case in CASES:
        assert dit(sample_argv(case, DATA / f"{case}.npz")) == 0
        (DATA / f"{case}.npz.protocol.json").unlink()


if __name__ == "__main__":
    main()
