"""``time_schedule`` end to end: `dit sample --time-schedule`, ``Pipeline(..., time_schedule=)``, `dit serve`'s
JSON and the protocol card all carry it from the one GenerationRequest field (no other declaration)."""

import json
import time

import numpy as np
import pytest

from dit.cli.main import main
from tests.helpers.sample import read_npz
from tests.reference.sample_golden import model_file

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

FLOW = model_file("flow")  # a tiny flow x-prediction model (tests/reference/sample_golden.py)
COMMON = ["--num-sampling-steps", "3", "--num-samples", "3", "--seed", "4", "--cfg-scale", "2"]
COMMON += ["--precision", "fp32", "--device", "cpu", "--no-progress"]


def _cli(tmp_path, schedule):
    out = tmp_path / f"{schedule}.npz"
    assert main(["sample", "--ckpt", str(FLOW), "--out", str(out), *COMMON, "--time-schedule", schedule]) == 0
    card = json.loads(open(f"{out}.protocol.json").read())
    return read_npz(out)[0], card["settings"]


def test_cli_api_and_card_carry_the_schedule(tmp_path):
    from dit.pipeline import Pipeline

    cosine, settings = _cli(tmp_path, "cosine")
    uniform, uniform_settings = _cli(tmp_path, "uniform")
    assert settings["time_schedule"] == "cosine" and uniform_settings["time_schedule"] == "uniform"
    assert not np.array_equal(cosine, uniform)
    pipe = Pipeline.from_pretrained(str(FLOW), device="cpu")
    kw = dict(num_images=3, num_steps=3, seed=4, cfg_scale=2.0, time_schedule="cosine")
    np.testing.assert_array_equal(pipe(output_type="np", **kw), cosine)  # the same pixels as the CLI
    images, card = pipe.generate(pipe.request(**kw))
    assert card["settings"]["time_schedule"] == "cosine" and len(images) == 3


def test_bad_schedule_is_one_line_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse refuses it, listing the choices
        main(["sample", "--ckpt", str(FLOW), "--out", str(tmp_path / "x.npz"), "--time-schedule", "karras"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--time-schedule" in err and "uniform" in err and len(err.strip().splitlines()) == 1


def test_the_request_refuses_an_unknown_schedule_in_one_line():
    from dit.config import GenerationRequest
    from dit.errors import UserError

    with pytest.raises(UserError, match="--time-schedule 'karras' is unknown; choose one of uniform, cosine"):
        GenerationRequest(time_schedule="karras").validate()


def test_server_accepts_the_schedule_and_refuses_an_unknown_one():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("httpx", reason="the serve extra's test client needs httpx")
    from fastapi.testclient import TestClient

    from dit.pipeline import Pipeline
    from dit.serve.app import Limits, create_app

    with TestClient(create_app(Pipeline.from_pretrained(str(FLOW), device="cpu"), Limits(max_steps=4))) as c:
        bad = c.post("/api/jobs", json={"classes": [0], "time_schedule": "karras"})
        assert bad.status_code == 422 and bad.json()["field"] == "time_schedule"
        job = c.post("/api/jobs", json={"classes": [0], "num_steps": 2, "time_schedule": "cosine"}).json()
        for _ in range(600):
            state = c.get(f"/api/jobs/{job['id']}").json()
            if state["status"] in ("done", "failed", "cancelled"):
                break
            time.sleep(0.05)
        assert state["status"] == "done", state
        assert c.get(state["protocol"]).json()["settings"]["time_schedule"] == "cosine"
