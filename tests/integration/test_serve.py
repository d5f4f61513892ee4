"""`dit serve`'s JSON API in-process (FastAPI's TestClient) and on a real socket: every field's
validation, queueing and busy answers, cancellation (endpoint and client gone), the same images as
`dit sample`, the command line, and a load test."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx", reason="the serve extra's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from dit.cli.main import main  # noqa: E402
from dit.serve.app import BadRequest, GenerateRequest, Limits, Model, check_request, create_app, preview_due  # noqa: E402
from dit.serve.server import bind_message, load_pipeline  # noqa: E402

from tests.helpers.sample import read_npz, sample_argv  # noqa: E402
from tests.helpers.serve import GatedPipe, free_port, running_server, wait_for  # noqa: E402

LIMITS = Limits(max_images=6, max_steps=20, max_waiting=1)
OK = {"classes": [1], "num_images": 2, "num_steps": 2, "sampler": "ddim"}


@pytest.fixture(scope="module")
def pipe(ckpt):
    return load_pipeline(str(ckpt), device="cpu")


@pytest.fixture(scope="module")
def client(pipe):
    with TestClient(create_app(pipe, LIMITS, ckpt="tiny")) as c:
        yield c


def follow(client, job_id: str) -> dict:
    """The job's server-sent events until it finishes; returns the last state."""
    states = []
    with client.stream("GET", f"/api/jobs/{job_id}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line[6:]))
    assert states, "no events"
    return states[-1] | {"_all": states}


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ------------------------------------------------------------------ the page and the schema
def test_page_assets_and_openapi_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "dit serve" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: every asset is ours
    schema = client.get("/openapi.json").json()
    assert {
        "/api/info",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/events",
        "/api/jobs/{job_id}/grid.png",
    } <= set(schema["paths"])
    assert set(schema["components"]["schemas"]["GenerateRequest"]["properties"]) == {
        "classes",
        "num_images",
        "sampler",
        "num_steps",
        "cfg_scale",
        "guidance_interval",
        "seed",
        # every other setting of a GenerationRequest the server does not decide (precision, batching, form)
        "guidance_channels",
        "eta",
        "time_schedule",
        "time_shift",
        "sde_diffusion",
    }


def test_info_lists_classes_samplers_defaults_and_limits(client):
    info = client.get("/api/info").json()
    assert [c["id"] for c in info["classes"]] == [0, 1, 2] and all(c["name"] for c in info["classes"])
    assert {"ddpm", "ddim", "dpm++2m"} <= set(info["samplers"])
    assert info["limits"] == {"max_images": 6, "max_steps": 20, "max_waiting": 1, "max_body_bytes": 16384}
    assert info["defaults"]["cfg_scale"] == 4.0
    assert (info["defaults"]["sampler"], info["objective"]) == ("ddpm", "gaussian")
    assert info["defaults"]["num_steps"] == 20  # the objective's 250 DDPM steps, capped by the server's limit


# ------------------------------------------------------------------ validation: one line, 4xx, JSON
BAD = [
    ("classes", {"classes": ["zebra"]}, "zebra"),  # the pipeline's own one-line reason follows "classes: "
    ("classes", {"classes": [3]}, "0..2"),
    ("classes", {"classes": []}, "at least one class"),
    ("classes", {"classes": [{"a": 1}]}, "classes"),
    ("classes", {"classes": [0, 1, 2], "num_images": 2}, "at most one class per image"),
    ("classes", {}, "at least one class"),
    ("num_images", {"num_images": 0}, "greater than or equal to 1"),
    ("num_images", {"num_images": 10**9}, "at most 6 images"),
    ("num_images", {"num_images": "many"}, "integer"),
    ("sampler", {"sampler": "heun"}, "unknown sampler 'heun' for this gaussian model"),  # a flow sampler
    ("sampler", {"sampler": "bogus"}, "unknown sampler 'bogus'"),
    ("num_steps", {"num_steps": 0}, "greater than or equal to 1"),
    ("num_steps", {"num_steps": 21}, "at most 20 steps"),
    ("num_steps", {"num_steps": 2.5}, "integer"),
    ("cfg_scale", {"cfg_scale": "nan"}, "finite"),
    ("cfg_scale", {"cfg_scale": "inf"}, "finite"),
    ("cfg_scale", {"cfg_scale": -1}, "greater than or equal to 0"),
    ("cfg_scale", {"cfg_scale": 1e9}, "less than or equal to 100"),
    ("guidance_interval", {"guidance_interval": [5]}, "guidance_interval"),
    ("guidance_interval", {"guidance_interval": [10, 2]}, "0 <= lo <= hi <= 999"),
    ("guidance_interval", {"guidance_interval": [0, 5000]}, "0 <= lo <= hi <= 999"),
    ("seed", {"seed": -1}, "greater than or equal to 0"),
    ("seed", {"seed": "x"}, "integer"),
    ("bogus", {"bogus": 1}, "unknown field"),
    ("eta", {"eta": 2}, "eta must be in [0, 1]"),  # a setting generated from GenerationRequest, checked by it
    ("time_shift", {"time_shift": 0}, "time_shift must be a positive number"),
    ("guidance_channels", {"guidance_channels": "some"}, "guidance_channels"),
]


@pytest.mark.parametrize("field,change,message", BAD, ids=[f"{b[0]}-{k}" for k, b in enumerate(BAD)])
def test_each_bad_field_gets_a_422_naming_it(client, field, change, message):
    body = {**OK, **change}
    if "classes" not in change and field == "classes":
        body.pop("classes")
    r = client.post("/api/jobs", json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["field"] == field and message in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in r.text


@pytest.mark.parametrize(
    "raw", [b'{"classes": [1], "cfg_scale": NaN}', b'{"classes": [1], "cfg_scale": Infinity}', b"{not json", b""]
)
def test_non_json_numbers_and_broken_bodies_get_a_422(client, raw):
    r = client.post("/api/jobs", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] and "Traceback" not in r.text


def test_unknown_jobs_and_unfinished_results_are_json_errors(client):
    r = client.get("/api/jobs/nope")
    assert r.status_code == 404 and "no job nope" in r.json()["error"]
    assert client.get("/api/nothing").json()["error"] == "Not Found"


# ------------------------------------------------------------------ same images as `dit sample`
def test_same_seed_and_settings_give_the_images_of_dit_sample(client, ckpt, tmp_path):
    settings = [
        "--class-labels",
        "0",
        "2",
        "--num-samples",
        "4",
        "--seed",
        "7",
        "--sampler",
        "ddpm",
        "--cfg-scale",
        "2.5",
        "--guidance-interval",
        "0",
        "500",
    ]  # DDPM: step noise is exercised too
    out = tmp_path / "ref.npz"
    assert main(sample_argv(ckpt, out, *settings)) == 0  # 3 steps (sample_utils.FAST)
    ref, labels = read_npz(out)
    job = client.post(
        "/api/jobs",
        json={
            "classes": [0, 2],
            "num_images": 4,
            "seed": 7,
            "sampler": "ddpm",
            "num_steps": 3,
            "cfg_scale": 2.5,
            "guidance_interval": [0, 500],
        },
    )
    assert job.status_code == 202, job.text
    state = follow(client, job.json()["id"])
    assert state["status"] == "done", state
    assert state["step"] == state["num_steps"] == 3  # every step was reported (the stream may skip some between polls)
    got = np.stack([png(client.get(u).content) for u in state["images"]])
    np.testing.assert_array_equal(got, ref)
    assert labels.tolist() == [0, 2, 0, 2]
    ours = client.get(state["protocol"]).json()["settings"]
    theirs = json.loads((tmp_path / "ref.npz.protocol.json").read_text())["settings"]
    for key in (
        "checkpoint",
        "model",
        "sampler",
        "num_sampling_steps",
        "cfg_scale",
        "guidance_interval",
        "seed",
        "num_samples",
        "vae",
    ):
        assert ours[key] == theirs[key], key
    grid = png(client.get(state["grid"]).content)
    assert grid.shape == (2 * 10 + 2, 2 * 10 + 2, 3)  # 2 classes × 2 images of 8×8, padding 2: rows by class


def test_previews_show_the_images_forming_and_the_last_is_the_result(pipe):
    """Previews are the decoded x_0 predictions; DDIM's last step returns its x_0 prediction unchanged."""
    g = GatedPipe(pipe, hold_at=2)  # held in step 3 of 4: steps 1 and 2 made their previews
    with TestClient(create_app(g, LIMITS)) as c:
        job = c.post("/api/jobs", json={**OK, "num_images": 4, "num_steps": 4}).json()
        assert c.get(f"/api/jobs/{job['id']}/preview.png").status_code in (404, 200)
        assert g.reached.wait(30)
        running = c.get(f"/api/jobs/{job['id']}").json()
        assert running["status"] == "running" and running["preview"].startswith(f"/api/jobs/{job['id']}/preview.png")
        early = png(c.get(running["preview"]).content)
        g.gate.set()
        state = follow(c, job["id"])
        assert state["status"] == "done" and "preview" not in state
        last = png(c.get(f"/api/jobs/{job['id']}/preview.png").content)
        final = png(c.get(state["grid"]).content)
        np.testing.assert_array_equal(last, final)
        assert early.shape == final.shape  # (this 2-step model's x_0 predictions saturate: equal values are fine)


def test_preview_schedule():
    assert [k for k in range(1, 11) if preview_due(k, 10, 3)] == [4, 8, 10]
    assert [k for k in range(1, 4) if preview_due(k, 3, 8)] == [1, 2, 3]
    assert not any(preview_due(k, 10, 0) for k in range(1, 11))


def test_an_unconditional_model_takes_no_classes():
    pipe = SimpleNamespace(num_classes=0, class_index=None)
    model = Model("gaussian", ("ddpm",), "ddpm", 250, 999)
    work = check_request(GenerateRequest(num_images=3, num_steps=2), pipe, LIMITS, model)
    assert work.class_labels is None and work.num_samples == 3
    with pytest.raises(BadRequest, match="unconditional"):
        check_request(GenerateRequest(classes=[1], num_steps=2), pipe, LIMITS, model)


@pytest.mark.slow
def test_a_flow_model_offers_its_own_samplers_and_defaults(tmp_path):
    from tests.helpers.train import make_image_folder, train_args

    run = tmp_path / "run"
    argv = train_args(make_image_folder(tmp_path / "data"), run, "--objective", "flow", "--max-steps", "1")
    assert main(argv) == 0
    ckpt = sorted((run / "checkpoints").glob("*.pt"))[-1]
    with TestClient(create_app(load_pipeline(str(ckpt), device="cpu"), LIMITS)) as c:
        info = c.get("/api/info").json()
        assert info["objective"] == "flow" and info["defaults"]["sampler"] == "heun" and "ddpm" not in info["samplers"]
        assert info["max_timestep"] == 1000
        bad = c.post("/api/jobs", json={"classes": [0], "sampler": "ddpm"})
        assert bad.status_code == 422 and "for this flow model" in bad.json()["error"]
        job = c.post("/api/jobs", json={"classes": [0], "num_steps": 2})  # the model's default sampler: heun
        state = follow(c, job.json()["id"])
        assert state["status"] == "done" and c.get(state["protocol"]).json()["settings"]["sampler"] == "heun"


def test_other_seed_gives_other_images(client):
    a, b = (follow(client, client.post("/api/jobs", json={**OK, "seed": s}).json()["id"]) for s in (1, 2))
    assert not np.array_equal(png(client.get(a["images"][0]).content), png(client.get(b["images"][0]).content))


# ------------------------------------------------------------------ queueing, busy, cancellation
@pytest.fixture
def gated(pipe):
    g = GatedPipe(pipe)
    with TestClient(create_app(g, LIMITS, ckpt="tiny")) as c:
        yield g, c
        g.gate.set()


def test_one_runs_one_waits_the_next_is_told_busy(gated):
    g, c = gated
    first = c.post("/api/jobs", json=OK).json()
    assert g.reached.wait(30)  # the first job runs (held at its first step)
    second = c.post("/api/jobs", json=OK)
    assert second.status_code == 202 and second.json()["status"] == "queued" and second.json()["position"] == 1
    third = c.post("/api/jobs", json=OK)
    assert third.status_code == 429 and third.headers["retry-after"] == "5"
    assert third.json()["error"].startswith("busy:") and "try again" in third.json()["error"]
    assert c.get("/api/info").json()["queue"] == {"waiting": 1, "running": 1, "max_waiting": 1}
    g.gate.set()
    assert follow(c, first["id"])["status"] == "done"
    assert follow(c, second.json()["id"])["status"] == "done"
    assert c.post("/api/jobs", json=OK).status_code == 202  # room again


def test_cancel_endpoint_stops_a_running_job_and_drops_a_waiting_one(gated):
    g, c = gated
    running = c.post("/api/jobs", json={**OK, "num_steps": 20}).json()
    assert g.reached.wait(30)
    waiting = c.post("/api/jobs", json=OK).json()
    dropped = c.post(f"/api/jobs/{waiting['id']}/cancel").json()
    assert dropped["status"] == "cancelled"
    assert c.post(f"/api/jobs/{running['id']}/cancel").status_code == 200
    g.gate.set()
    state = follow(c, running["id"])
    assert state["status"] == "cancelled" and "cancelled by request" in state["error"]
    assert g.steps_run == 1  # of 20: the sampler stopped at the step after the cancel
    r = c.get(f"/api/jobs/{running['id']}/grid.png")
    assert r.status_code == 409 and "cancelled" in r.json()["error"]


def test_a_page_that_goes_away_cancels_its_job(pipe):
    """On a real socket: the events stream is closed by the client mid-run → the work stops."""
    g = GatedPipe(pipe)
    with running_server(create_app(g, LIMITS, ckpt="tiny")) as url, httpx.Client(base_url=url, timeout=30) as c:
        job = c.post("/api/jobs", json={**OK, "num_steps": 20}).json()
        assert g.reached.wait(30)
        with c.stream("GET", f"/api/jobs/{job['id']}/events") as r:
            first = next(line for line in r.iter_lines() if line.startswith("data: "))
            assert json.loads(first[6:])["status"] == "running"
        # the stream is closed: the server notices within its 0.1 s poll and asks the job to stop
        wait_for(lambda: c.get(f"/api/jobs/{job['id']}").json()["error"] is not None, what="the cancel")
        g.gate.set()
        wait_for(lambda: c.get(f"/api/jobs/{job['id']}").json()["status"] != "running", what="the job to stop")
        state = c.get(f"/api/jobs/{job['id']}").json()
        assert state["status"] == "cancelled" and "went away" in state["error"], state
        assert g.steps_run < 20
        assert c.get("/api/info").status_code == 200  # still serving


# ------------------------------------------------------------------ the command line
def test_bind_message_says_who_can_reach_the_server():
    assert "only this machine" in bind_message("127.0.0.1", 7860)
    assert "CAN reach it" in bind_message("0.0.0.0", 7860)


def test_missing_extra_is_one_line(monkeypatch, capsys, ckpt):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn → ImportError(name="uvicorn")
    monkeypatch.delitem(sys.modules, "dit.serve.server", raising=False)
    assert main(["serve", "--ckpt", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dit serve needs fastapi and uvicorn") and "pip install 'dit[serve]'" in err
    assert len(err.splitlines()) == 1


def test_a_taken_port_is_one_line_before_the_model_loads(capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--ckpt", str(tmp_path / "missing.pt"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; pick another --port or --host"


@pytest.mark.slow
def test_load_20_concurrent_requests_all_answered_and_still_serving(ckpt):
    """`dit serve` as a process on 127.0.0.1; 20 clients at once: each gets its images or a busy answer."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dit.cli.main",
            "serve",
            "--ckpt",
            str(ckpt),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--max-queue",
            "4",
            "--max-steps",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "bound to 127.0.0.1: only this machine" in line, line
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=5) as c:
            wait_for(lambda: _up(c), timeout=60, what="the server")
        outcomes: list[str] = []
        barrier = threading.Barrier(20)

        def one(k: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                barrier.wait()
                r = c.post("/api/jobs", json={**OK, "num_steps": 5, "seed": k})
                if r.status_code == 429:
                    outcomes.append("busy" if r.json()["error"].startswith("busy") else "bad-429")
                    return
                assert r.status_code == 202, r.text
                with c.stream("GET", f"/api/jobs/{r.json()['id']}/events") as s:
                    last = [json.loads(x[6:]) for x in s.iter_lines() if x.startswith("data: ")][-1]
                ok = last["status"] == "done" and c.get(last["images"][0]).status_code == 200
                outcomes.append("done" if ok else f"bad-{last['status']}")

        start = time.time()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert time.time() - start < 120 and not any(t.is_alive() for t in threads)
        assert len(outcomes) == 20 and set(outcomes) <= {"done", "busy"}, outcomes
        assert 1 <= outcomes.count("done") and outcomes.count("busy") >= 1  # 20 at once > 1 running + 4 waiting
        with httpx.Client(base_url=url, timeout=60) as c:  # still serving: a new request completes
            r = c.post("/api/jobs", json=OK)
            assert r.status_code == 202
            wait_for(lambda: c.get(f"/api/jobs/{r.json()['id']}").json()["status"] == "done", what="a last job")
    finally:
        proc.terminate()
        proc.wait(30)


def _up(c) -> bool:
    try:
        return c.get("/api/info").status_code == 200
    except httpx.HTTPError:
        return False
