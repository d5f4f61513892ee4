"""A checkpoint's sampling defaults end to end: `dit train --sampler/--num-sampling-steps` records them in the
checkpoint and its EMA export; `dit sample`, the Pipeline and `dit serve` draw with them unless told otherwise;
a MeanFlow model with guidance folded into its weights is not guided twice by default."""

import dataclasses
import json

import pytest

import dit
from dit.cli.main import main
from dit.errors import UserError
from dit.runtime.checkpoint import ema_export_path

from tests.helpers.train import final_state, train_args

pytestmark = pytest.mark.usefixtures("one_thread")

FLOW = ["--recipe", "fast", "--precision", "fp32", "--max-steps", "2", "--ckpt-every", "2"]


def _newest(run):
    return sorted((run / "checkpoints").glob("*.pt"))[-1]


def _card(tmp_path, ckpt, *extra):
    out = tmp_path / f"s{len(list(tmp_path.glob('*.npz')))}.npz"
    argv = ["sample", "--ckpt", str(ckpt), "--out", str(out), "--num-samples", "2", "--device", "cpu", "--no-progress"]
    assert main([*argv, *extra]) == 0
    return json.loads(open(f"{out}.protocol.json").read())["settings"]


@pytest.fixture(scope="module")
def euler_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("euler") / "run"
    assert main(train_args(data, run, *FLOW, "--sampler", "euler", "--num-sampling-steps", "3")) == 0
    return run


def test_the_checkpoint_and_its_export_record_the_runs_sampler(euler_run):
    record = {"sampler": "euler", "num_sampling_steps": 3, "cfg_scale": None}
    assert final_state(euler_run)["config"]["sampling"] == record
    for path in (_newest(euler_run), ema_export_path(_newest(euler_run))):
        d = dit.Pipeline.from_pretrained(str(path), device="cpu").loaded.defaults
        assert d.to_dict() == record


def test_dit_sample_draws_with_them_and_flags_win(euler_run, tmp_path):
    ckpt = _newest(euler_run)
    s = _card(tmp_path, ckpt)
    assert (s["sampler"], s["num_sampling_steps"], s["cfg_scale"]) == ("euler", 3, 1.5)
    s = _card(tmp_path, ckpt, "--sampler", "heun", "--num-sampling-steps", "2", "--cfg-scale", "2")
    assert (s["sampler"], s["num_sampling_steps"], s["cfg_scale"]) == ("heun", 2, 2.0)


def test_the_pipeline_draws_with_them(euler_run):
    pipe = dit.Pipeline.from_pretrained(str(_newest(euler_run)), device="cpu")
    _, card = pipe.generate(pipe.request(num_images=2))
    s = card["settings"]
    assert (s["sampler"], s["num_sampling_steps"], s["cfg_scale"]) == ("euler", 3, 4.0)  # the API's guidance: 4


def test_a_run_without_a_choice_records_the_objectives(data, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(data, run, *FLOW)) == 0
    assert final_state(run)["config"]["sampling"] == {"sampler": "heun-x0", "num_sampling_steps": 10, "cfg_scale": None}


@pytest.fixture(scope="module")
def meanflow_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("meanflow") / "run"
    assert main(train_args(data, run, *FLOW, "--objective", "meanflow", "--meanflow-guidance", "1.5")) == 0
    return run


def test_meanflow_with_guidance_in_its_weights_is_not_guided_again(meanflow_run, tmp_path):
    run = meanflow_run
    assert final_state(run)["config"]["sampling"] == {"sampler": "meanflow", "num_sampling_steps": 2, "cfg_scale": 1.0}
    s = _card(tmp_path, _newest(run))
    assert (s["sampler"], s["num_sampling_steps"], s["cfg_scale"], s["guided"]) == ("meanflow", 2, 1.0, False)
    pipe = dit.Pipeline.from_pretrained(str(_newest(run)), device="cpu")
    _, card = pipe.generate(pipe.request(num_images=2))
    assert card["settings"]["cfg_scale"] == 1.0 and card["settings"]["guided"] is False
    with pytest.raises(UserError, match="guidance_interval does not apply to a MeanFlow model"):
        pipe.generate(pipe.request(num_images=1, cfg_scale=2.0, guidance_interval=(0, 500)))
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from dit.serve.app import DEFAULT_LIMITS, Model

    model = Model.of(pipe)
    assert (model.default_sampler, model.default_steps, model.default_cfg_scale) == ("meanflow", 2, 1.0)
    assert model.page_defaults(DEFAULT_LIMITS)["cfg_scale"] == 1.0
    from dit.serve.app import GenerateRequest, check_request

    drawn = check_request(GenerateRequest(classes=[0], num_images=2), pipe, DEFAULT_LIMITS, model)
    assert (drawn.sampler, drawn.num_sampling_steps, drawn.cfg_scale) == ("meanflow", 2, 1.0)
    asked = check_request(GenerateRequest(classes=[0], num_images=2, cfg_scale=2.0), pipe, DEFAULT_LIMITS, model)
    assert asked.cfg_scale == 2.0
    from dit.serve.app import BadRequest

    with pytest.raises(BadRequest, match="does not apply to a MeanFlow model"):
        check_request(GenerateRequest(classes=[0], guidance_interval=(0, 500)), pipe, DEFAULT_LIMITS, model)


def test_serve_shows_a_meanflow_jobs_one_call_draw_while_the_full_one_runs(meanflow_run, euler_run):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from dit.serve.app import DEFAULT_LIMITS, GenerateRequest, Model, check_request
    from dit.serve.jobs import Job
    from dit.serve.results import png_bytes, run_job
    from dit.sampling.writers import grid_image

    class Spy:  # the pipeline, noting each draw's calls and the preview shown when it starts
        def __init__(self, pipe):
            self.pipe, self.draws = pipe, []

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def generate(self, request, callback=None):
            self.draws.append((request.num_sampling_steps, job.preview))
            return self.pipe.generate(request, callback)

    pipe = dit.Pipeline.from_pretrained(str(_newest(meanflow_run)), device="cpu")
    spy = Spy(pipe)
    job = Job(check_request(GenerateRequest(classes=[0, 1], num_images=2), pipe, DEFAULT_LIMITS, Model.of(pipe)))
    result = run_job(spy, job, previews=1)
    (first, none), (full, shown) = spy.draws
    assert (first, none, full) == (1, None, 2)
    one_call = pipe.generate(dataclasses.replace(job.request, output_type="np", num_sampling_steps=1))[0]
    assert shown == png_bytes(grid_image(one_call, job.request.class_labels))  # the one-call draw, same noise
    assert job.preview != shown and len(result.images) == 2  # the full draw's last step replaced it

    flow = dit.Pipeline.from_pretrained(str(_newest(euler_run)), device="cpu")
    spy = Spy(flow)
    job = Job(check_request(GenerateRequest(classes=[0], num_images=1), flow, DEFAULT_LIMITS, Model.of(flow)))
    run_job(spy, job, previews=1)
    assert spy.draws == [(3, None)]  # a flow model's one call is no sample: no extra draw


def test_a_run_choosing_another_objectives_sampler_is_refused_in_one_line(data, tmp_path, capsys):
    assert main(train_args(data, tmp_path / "run", *FLOW, "--sampler", "ddpm")) == 2
    err = capsys.readouterr().err.strip()
    assert "sampler 'ddpm' does not draw from a flow-matching" in err and "\n" not in err
    assert not (tmp_path / "run").exists()
