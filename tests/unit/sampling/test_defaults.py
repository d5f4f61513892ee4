"""A checkpoint's sampling defaults (dit.sampling.defaults): derived from the objective, read back from a record
(anything that does not fit the model falls back), and the precedence request > checkpoint > surface."""

import math

import pytest

from dit.config import DiffusionConfig, GenerationRequest
from dit.errors import UserError
from dit.sampling.defaults import FALLBACK_CFG_SCALE, SamplingDefaults

GAUSSIAN = DiffusionConfig()
FLOW_V = DiffusionConfig(objective="flow")
FLOW_X = DiffusionConfig(objective="flow", prediction_type="xstart")
MEANFLOW = DiffusionConfig(objective="meanflow", prediction_type="xstart")
GUIDED_MEANFLOW = DiffusionConfig(objective="meanflow", prediction_type="xstart", meanflow_guidance=1.5)


@pytest.mark.parametrize(
    "diffusion, expected",
    [
        (GAUSSIAN, ("ddpm", 250, None)),
        (FLOW_V, ("heun", 25, None)),
        (FLOW_X, ("heun-x0", 10, None)),
        (MEANFLOW, ("meanflow", 2, None)),
        (GUIDED_MEANFLOW, ("meanflow", 2, 1.0)),  # guidance in the weights: unset guidance must not guide again
    ],
)
def test_the_objective_decides_what_a_run_records(diffusion, expected):
    d = SamplingDefaults.of(diffusion)
    assert (d.sampler, d.num_sampling_steps, d.cfg_scale) == expected


def test_a_run_choice_is_recorded_and_another_objectives_sampler_is_refused():
    assert SamplingDefaults.of(FLOW_X, "euler", 7) == SamplingDefaults("euler", 7, None)
    assert SamplingDefaults.of(FLOW_X, None, 7) == SamplingDefaults("heun-x0", 7, None)
    with pytest.raises(UserError, match="sampler 'heun' does not draw from a Gaussian-diffusion .*choose one of ddpm"):
        SamplingDefaults.of(GAUSSIAN, "heun", None)


def test_a_record_round_trips():
    d = SamplingDefaults("euler", 7, 2.5)
    assert SamplingDefaults.from_record(d.to_dict(), FLOW_X) == d
    assert SamplingDefaults.from_record(SamplingDefaults.of(GUIDED_MEANFLOW).to_dict(), GUIDED_MEANFLOW).cfg_scale == 1


@pytest.mark.parametrize(
    "record",
    [
        None,
        "euler",
        [],
        {},
        {"sampler": "ddpm", "num_sampling_steps": 0, "cfg_scale": math.nan},
        {"sampler": 3, "num_sampling_steps": True, "cfg_scale": -1},
        {"sampler": "nonsense", "num_sampling_steps": "10", "cfg_scale": "4"},
        {"sampler": None, "num_sampling_steps": 2.5, "cfg_scale": math.inf},
    ],
)
def test_a_record_that_does_not_fit_falls_back_to_the_objective(record):
    assert SamplingDefaults.from_record(record, FLOW_X) == SamplingDefaults("heun-x0", 10, None)


def test_a_partial_record_keeps_what_fits():
    d = SamplingDefaults.from_record({"sampler": "ddpm", "num_sampling_steps": 5, "cfg_scale": 3}, FLOW_X)
    assert d == SamplingDefaults("heun-x0", 5, 3.0)


def test_fill_precedence_request_then_checkpoint_then_surface():
    d = SamplingDefaults("euler", 7, None)
    filled = d.fill(GenerationRequest())
    assert (filled.sampler, filled.num_sampling_steps, filled.cfg_scale) == ("euler", 7, FALLBACK_CFG_SCALE)
    assert d.fill(GenerationRequest(), cfg_scale=4.0).cfg_scale == 4.0
    mine = d.fill(GenerationRequest(sampler="heun", num_sampling_steps=3, cfg_scale=2.0))
    assert (mine.sampler, mine.num_sampling_steps, mine.cfg_scale) == ("heun", 3, 2.0)
    folded = SamplingDefaults("meanflow", 2, 1.0)
    assert folded.fill(GenerationRequest(), cfg_scale=4.0).cfg_scale == 1.0
    assert folded.fill(GenerationRequest(cfg_scale=1.3)).cfg_scale == 1.3  # asked for: more guidance on top
