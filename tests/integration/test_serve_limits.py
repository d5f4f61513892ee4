"""`dit serve` under hostile input (issue 27): a request-size cap (413, a short answer, the server still
serves), errors that quote input only in short excerpts, the wording of malformed JSON and unknown
classes, and random JSON thrown at every endpoint (hypothesis)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="the serve extra's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dit.serve.app import GenerateRequest, Limits, create_app  # noqa: E402
from dit.serve.server import load_pipeline  # noqa: E402

LIMITS = Limits(max_images=2, max_steps=2, max_waiting=1)
OK = {"classes": [1], "num_images": 1, "num_steps": 1, "sampler": "ddim"}
ERROR_BYTES = 1024  # the most an error answer may be, whatever was sent
STATE_BYTES = 4096  # a job's state (no card before it has finished)
FIVE_MB = 5 * 1024 * 1024
# (method, path) of every endpoint, with ids a test may not know
ENDPOINTS = [
    ("GET", "/api/info"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/{id}"),
    ("POST", "/api/jobs/{id}/cancel"),
    ("GET", "/api/jobs/{id}/preview.png"),
    ("GET", "/api/jobs/{id}/images/0.png"),
    ("GET", "/api/jobs/{id}/grid.png"),
    ("GET", "/api/jobs/{id}/protocol.json"),
    ("GET", "/"),
]


@pytest.fixture(scope="module")
def client(ckpt):
    with TestClient(create_app(load_pipeline(str(ckpt), device="cpu"), LIMITS, ckpt="tiny")) as c:
        yield c


def _assert_error(r, *statuses: int) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert len(r.content) < ERROR_BYTES, f"{len(r.content)} bytes: {r.text[:300]}…"
    answer = r.json()
    assert answer["error"] and "\n" not in answer["error"] and "Traceback" not in r.text
    return answer


def _still_serves(client) -> None:
    """The next valid request is served (queued: 202), once the jobs earlier tests queued have run."""
    assert client.get("/api/info").status_code == 200
    deadline = time.monotonic() + 60
    while (r := client.post("/api/jobs", json=OK)).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.2)  # busy: an earlier valid request still holds the one queue place
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("method, path", ENDPOINTS)
def test_a_5_mb_body_to_any_endpoint_gets_a_short_413(client, method, path):
    body = json.dumps({"classes": ["x" * FIVE_MB]}).encode()
    r = client.request(method, path.format(id="nope"), content=body, headers={"content-type": "application/json"})
    answer = _assert_error(r, 413)
    assert "larger than 16,384 bytes" in answer["error"]
    _still_serves(client)


def test_a_chunked_body_without_a_length_is_capped_too(client):
    def chunks():
        for _ in range(64):
            yield b"x" * 65536

    r = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    _assert_error(r, 413)
    _still_serves(client)


def test_an_error_quotes_a_long_input_only_in_a_short_excerpt(client):
    name = "golden retriever " * 800  # 13.6 KB: under the cap, so it reaches validation
    answer = _assert_error(client.post("/api/jobs", json={**OK, "classes": [name]}), 422)
    assert answer["field"] == "classes" and "13,600 characters" in answer["error"]
    answer = _assert_error(client.post("/api/jobs", json={**OK, "k" * 10000: 1}), 422)
    assert "unknown field" in answer["error"] and "10,000 characters" in answer["error"]
    answer = _assert_error(client.post("/api/jobs", json={**OK, "classes": ["9" * 5000]}), 422)
    assert "is outside 0..2" in answer["error"]  # not Python's int-from-5,000-digits ValueError (a 500)
    answer = _assert_error(client.get("/api/jobs/" + "j" * 3000), 404)
    assert "3,000 characters" in answer["error"]


@pytest.mark.parametrize("raw, position", [(b"{not json", 1), (b'{"classes": [1],}', 16)])
def test_malformed_json_names_the_body_and_the_position(client, raw, position):
    r = client.post("/api/jobs", content=raw, headers={"content-type": "application/json"})
    answer = _assert_error(r, 422)
    assert answer["field"] == "body", answer  # not the character position as a field name
    assert f"the body is not valid JSON (at character {position})" in answer["error"]


def test_an_unknown_class_points_at_the_http_route(client):
    answer = _assert_error(client.post("/api/jobs", json={**OK, "classes": ["zebra"]}), 422)
    assert "unknown class 'zebra'; GET /api/info lists the class names and ids" in answer["error"]
    assert "pipe." not in answer["error"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)
# requests that look like generation requests, with any values: they reach the deeper checks
FIELDS = st.sampled_from([*GenerateRequest.model_fields, "bogus"])
REQUESTS = st.dictionaries(FIELDS, JSON | st.integers(-5, 5) | st.sampled_from(["ddim", "class1", "zebra"]), max_size=6)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=JSON | REQUESTS, job_id=st.text(min_size=1, max_size=30))
def test_random_json_at_every_endpoint_gets_a_bounded_json_answer(client, endpoint, body, job_id):
    method, path = endpoint
    url = path.format(id=quote(job_id, safe=""))
    r = client.request(method, url, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        _assert_error(r, r.status_code)
    elif r.headers["content-type"].startswith("application/json") and path != "/api/info":
        assert len(r.content) < STATE_BYTES, r.text[:300]


def test_the_server_serves_after_the_random_requests(client):
    _still_serves(client)
