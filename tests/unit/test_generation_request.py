"""GenerationRequest is the one declaration of a generation setting: `dit sample`'s flags, the Python
API's keyword arguments, `dit serve`'s JSON fields and the samplers' options all derive from its fields,
so a new setting is one field (plus the code that reads it)."""

import dataclasses

import pytest

from dit.config import API_FIELDS, GenerationRequest, request_from_api
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


def test_the_servers_request_model_has_every_setting_it_does_not_decide():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from dit.serve.app import GenerateRequest
    from dit.serve.requests import SERVER_DECIDES

    assert set(GenerateRequest.model_fields) == {api_name(f) for f in FIELDS if f.name not in SERVER_DECIDES}


@pytest.mark.parametrize("objective", sorted({s.objective for s in SAMPLERS.values()}))
def test_every_sampler_option_is_a_request_setting(objective):
    """Samplers read their options from the request by name: an option with no field could not be set."""
    assert set(options_for(objective)) <= {f.name for f in FIELDS}
