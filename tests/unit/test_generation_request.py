"""GenerationRequest is the one declaration of a generation setting: `dit sample`'s flags, the Python
API's keyword arguments, `dit serve`'s JSON fields and the samplers' options all derive from its fields,
so a new setting is one field (plus the code that reads it)."""

import dataclasses

import pytest

from dit.config import API_FIELDS, GenerationRequest, SettingError, api_setting, request_from_api
from dit.config.fields import info
from dit.config.request import api_name
from dit.diffusion.registry import SAMPLERS, options_for
from dit.errors import UserError

FIELDS = dataclasses.fields(GenerationRequest)


def test_every_setting_is_a_dit_sample_flag_with_its_field_as_destination():
    from dit.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices["sample"]
    by_dest = {a.dest: a for a in parser._actions}
    for f in FIELDS:
        s = info(GenerationRequest, f)
        if not s.cli:
            continue
        assert f.name in by_dest, f"{f.name} has no flag"
        assert s.flag in by_dest[f.name].option_strings


def test_every_setting_has_an_api_name_that_round_trips():
    request = GenerationRequest(
        class_labels=(2, 0), num_samples=5, sampler="ddim", num_sampling_steps=7, cfg_scale=3.0,
        guidance_interval=(10, 900), eta=0.5, time_schedule="cosine", seed=9, batch_size=2, output_type="np",
    )  # fmt: skip
    kwargs = {api_name(f): getattr(request, f.name) for f in FIELDS}
    assert set(kwargs) == set(API_FIELDS)
    assert request_from_api(**kwargs) == request
    with pytest.raises(UserError, match="unknown generation settings \\['bogus'\\]"):
        request_from_api(bogus=1)


@pytest.mark.parametrize(
    "change, field, flag_message, api_message",
    [
        ({"num_samples": 0}, "num_samples", "--num-samples must be positive, got 0", "num_images must be positive"),
        (
            {"num_sampling_steps": 0},
            "num_sampling_steps",
            "--num-sampling-steps must be >= 1",
            "num_steps must be >= 1",
        ),
        ({"cfg_scale": -1.0}, "cfg_scale", "--cfg-scale must be a finite number >= 0", "cfg_scale must be a finite"),
        ({"time_shift": 0.0}, "time_shift", "--time-shift must be a positive number", "time_shift must be a positive"),
        ({"time_schedule": "karras"}, "time_schedule", "--time-schedule 'karras' is unknown", "time_schedule 'karras'"),
        (
            {"guidance_interval": (900, 100)},
            "guidance_interval",
            "--guidance-interval: guidance interval (900, 100) is empty; give low <= high",
            "guidance_interval: guidance interval (900, 100) is empty",
        ),
        (
            {"class_labels": (1, 2, 3), "num_samples": 2},
            "num_samples",
            "--class-labels gives 3 labels but --num-samples is 2",
            "classes gives 3 labels but num_images is 2",
        ),
    ],
)
def test_a_bad_request_names_the_setting_as_the_asker_typed_it(change, field, flag_message, api_message):
    """`dit sample` says the flag; the Python API and the server say their keyword; both say which field."""
    request = dataclasses.replace(GenerationRequest(), **change)
    with pytest.raises(SettingError) as cli:
        request.validate()
    with pytest.raises(SettingError) as api:
        request.validate(api_setting)
    assert cli.value.field == api.value.field == field
    assert str(cli.value).startswith(flag_message) and str(api.value).startswith(api_message)
    assert "--" not in str(api.value)


def test_the_servers_request_model_has_every_setting_it_does_not_decide():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from dit.serve.app import GenerateRequest
    from dit.serve.requests import SERVER_DECIDES

    assert set(GenerateRequest.model_fields) == {api_name(f) for f in FIELDS if f.name not in SERVER_DECIDES}


@pytest.mark.parametrize("objective", sorted({s.objective for s in SAMPLERS.values()}))
def test_every_sampler_option_is_a_request_setting(objective):
    """Samplers read their options from the request by name: an option with no field could not be set."""
    assert set(options_for(objective)) <= {f.name for f in FIELDS}
