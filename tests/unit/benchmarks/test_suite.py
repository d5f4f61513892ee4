"""The benchmark suite: the runner's JSON schema (a --tiny run), its timing statistics, that the
compared paths do the same work (same loss; diffusers' DiT computes our function), the guidance
row counts against an independent count, and the GPU check script's CPU smoke mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.common import Stat, interleaved, ratio
from benchmarks.sample_speed import GUIDANCE, expected_rows
from benchmarks.train_speed import MODELS, OFFICIAL, PathSpec, build_path, train_flops_per_image

ROOT = Path(__file__).resolve().parents[3]


def run_module(args, tmp_path, timeout=600, **env):
    """Run a benchmark entry point in a fresh process (one thread, passive OpenMP waits: a shared CPU)."""
    full_env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'src'}", OMP_WAIT_POLICY="PASSIVE", **env)
    return subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_stat(d, positive=True):
    assert set(d) >= {"median", "min", "max", "spread", "samples"}
    assert len(d["samples"]) >= 1 and d["min"] <= d["median"] <= d["max"]
    if positive:
        assert d["min"] > 0


def test_tiny_run_writes_the_documented_schema(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_module(
        [sys.executable, "-m", "benchmarks", "--tiny", "--threads", "1", "--no-memory", "--out", str(out)], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target" in proc.stdout and "images/s" in proc.stdout  # the printed tables
    r = json.loads(out.read_text())
    assert r["schema"] == 1 and r["mode"] == "tiny"
    assert r["env"]["omp_wait_policy"] == "PASSIVE" and r["env"]["device"] == "cpu"
    assert set(r["matmul_gflops"]) == {"fp32", "bf16"}
    for s in r["matmul_gflops"].values():
        assert_stat(s)
    paths = r["train"]["tiny"]["paths"]
    assert set(paths) == {"fp32-eager", "ours", "diffusers", "official"}
    assert set(r["train"]["tiny"]["speedups"]) >= {"ours/diffusers", "ours/official"}
    for p in paths.values():
        assert_stat(p["images_per_s"])
        assert_stat(p["mfu"])
        assert p["params"] > 0 and "peak_memory_mb" in p
        n = len(p["images_per_s"]["samples"])
        # MFU is images/s × training flops ÷ the measured peak of the path's precision, sample by sample.
        flops = train_flops_per_image(MODELS["tiny"])
        # ... measured in the same interleaved rounds as the training steps.
        peaks = r["train"]["tiny"]["matmul_gflops_same_rounds"][p["spec"]["precision"]]["samples"]
        for ips, mfu, peak in zip(p["images_per_s"]["samples"], p["mfu"]["samples"], peaks, strict=True):
            assert mfu == pytest.approx(ips * flops / 1e9 / peak, rel=1e-9)
        assert n == r["plan"]["train_repeats"]
    # End to end: `dit train` with its defaults and the official loop, each run in every round.
    e2e = r["e2e"]
    assert "-m dit train" in e2e["commands"]["dit-train"] and "official_train" in e2e["commands"]["official"]
    for name in ("dit-train", "official"):
        assert_stat(e2e["wall_seconds"][name])
        assert_stat(e2e["steady_seconds_per_step"][name])
        assert len(e2e["wall_seconds"][name]["samples"]) == r["plan"]["train_repeats"]
    walls = [e2e["wall_seconds"][n]["samples"] for n in ("official", "dit-train")]
    assert e2e["speedup_wall"]["samples"] == pytest.approx([a / b for a, b in zip(*walls, strict=True)])
    assert paths["diffusers"]["spec"]["impl"] == "diffusers"
    # diffusers keeps a copy of the timestep/label embedders in every block: more parameters, same function
    # (test_diffusers_adapter_is_the_same_function_as_ours).
    assert paths["diffusers"]["params"] > paths["ours"]["params"] == paths["fp32-eager"]["params"]
    for key in ("ours/fp32-eager", "ours/diffusers"):
        assert_stat(r["train"]["tiny"]["speedups"][key])
    cases = r["sample"]["cases"]
    assert len(cases) == 9
    for c in cases.values():
        assert_stat(c["seconds_per_image"])
        assert c["rows"] == c["expected_rows"]
    curves = r["loss_curves"]
    assert set(curves["curves"]) == {"fp32", "bf16", "fp32_seed1"}
    assert all(len(v) == curves["steps"] for v in curves["curves"].values())
    assert curves["curves"]["fp32"][0] == pytest.approx(curves["curves"]["bf16"][0], rel=0.05)
    names = [t["target"] for t in r["targets"]]
    assert any("3x fp32 eager" in n for n in names) and any("diffusers" in n for n in names)
    assert any("loss curve" in n for n in names) and any("guidance interval" in n for n in names)
    assert all(isinstance(t["met"], bool) for t in r["targets"])


def test_memory_probe_reports_a_positive_peak(tmp_path):
    spec = json.dumps(
        {
            "name": "x",
            "impl": "dit",
            "precision": "fp32",
            "compile": False,
            "optimizer": "foreach",
            "grad_checkpointing": False,
        }
    )
    proc = run_module(
        [sys.executable, "-m", "benchmarks.train_speed", "--memory-probe", spec, "--model", "tiny", "--batch", "4"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    # At least the fp32 weights, gradients and two AdamW moments of the model must have been resident.
    n = sum(p.numel() for p in build_path(PathSpec("x"), MODELS["tiny"], 2, torch.device("cpu")).model.parameters())
    assert probe["peak_mb"] >= 4 * n * 4 / 2**20


def test_stat_and_ratio_against_statistics_module():
    import statistics

    s = Stat([3.0, 1.0, 2.0, 10.0])
    assert s.median == statistics.median(s.samples) and s.min == 1.0 and s.max == 10.0
    assert s.spread == pytest.approx(9.0 / 2.5)
    assert ratio(Stat([2.0, 4.0]), Stat([1.0, 8.0])).samples == [2.0, 0.5]


def test_interleaved_rotates_rounds_and_counts_calls():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    stats = interleaved(fns, torch.device("cpu"), repeats=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up round
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # no path always first
    assert all(len(s.samples) == 3 and s.min >= 0 for s in stats.values())


def test_expected_rows_matches_an_independent_count():
    from dit.diffusion.schedules import space_timesteps

    lo, hi = GUIDANCE["cfg-interval"][1]
    kept = space_timesteps(1000, "10")
    inside = len([t for t in kept if lo <= t <= hi])
    assert 0 < inside < 10
    assert expected_rows("ddpm", 10, "none", 3) == 3 * 10
    assert expected_rows("ddpm", 10, "cfg", 3) == 3 * 20
    assert expected_rows("ddpm", 10, "cfg-interval", 3) == 3 * (10 + inside)


def test_paths_compute_the_same_first_loss():
    """fp32 eager, fused AdamW and bf16 autocast paths see the same weights, data and draws."""
    cfg, dev = MODELS["tiny"], torch.device("cpu")
    losses = {
        name: float(build_path(spec, cfg, 4, dev).step())
        for name, spec in {
            "eager": PathSpec("a"),
            "fused": PathSpec("b", optimizer="fused"),
            "loop": PathSpec("c", optimizer="for-loop"),
            "bf16": PathSpec("d", precision="bf16"),
        }.items()
    }
    assert losses["fused"] == losses["eager"] == losses["loop"]
    assert losses["bf16"] == pytest.approx(losses["eager"], rel=2e-2)
    # The official step (diffusers' DiT, torch's default AdamW, the official EMA loop) does the same work
    # as the diffusers path: the same first loss, and after two updates the same loss up to float noise.
    peers = {
        n: build_path(spec, cfg, 4, dev)
        for n, spec in (("d", PathSpec("d", impl="diffusers")), ("o", PathSpec("o", **OFFICIAL)))
    }
    first = {n: float(p.step()) for n, p in peers.items()}
    assert first["d"] == first["o"]
    for _ in range(2):
        ld, lo = float(peers["d"].step()), float(peers["o"].step())
    assert ld == pytest.approx(lo, rel=1e-5)
    # A second step differs only by the optimiser implementation: equal to float tolerance.
    a, b = (build_path(PathSpec(n, optimizer=o), cfg, 4, dev) for n, o in (("a", "foreach"), ("b", "fused")))
    for _ in range(2):
        la, lb = float(a.step()), float(b.step())
    assert la == pytest.approx(lb, rel=1e-5)


def test_diffusers_adapter_is_the_same_function_as_ours():
    """With our weights converted and diffusers' two constants set to the official ones, the peer
    computes our model's output: the comparison is like for like."""
    from benchmarks.train_speed import DiffusersAdapter, build_dit
    from dit.weights.diffusers_keys import make_diffusers_official, official_to_diffusers

    cfg = MODELS["tiny"]
    torch.manual_seed(0)
    ours = build_dit(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # leave the zero-initialised identity
    peer = DiffusersAdapter(cfg).eval()
    peer.transformer.load_state_dict(official_to_diffusers(ours.state_dict()), strict=False)
    make_diffusers_official(peer.transformer)
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([0, 400, 999]), torch.tensor([1, 2, 3])
    drop = torch.tensor([False, True, False])
    with torch.no_grad():
        torch.testing.assert_close(peer(x, t, y, drop), ours(x, t, y, drop_mask=drop), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu_tiny(tmp_path):
    proc = run_module(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny"], tmp_path, timeout=900, OUT=str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r["errors"] == {}, r["errors"]
    assert r["pytest_cuda"]["tests"] >= 3 and r["pytest_cuda"]["failures"] == 0
    assert len(r["cases"]) == 4
    for name, c in r["cases"].items():
        assert c["images_per_s"] > 0, name
    ckpt = [c for n, c in r["cases"].items() if n.endswith("ckpt=on")][0]
    assert ckpt["grad_checkpointing"] is True and ckpt["final_loss"] > 0


@pytest.mark.slow
def test_gpu_check_round2_runs_on_cpu_tiny(tmp_path):
    """Issue 18's GPU cases in their CPU smoke form: every case answers (float8 says why it cannot)."""
    proc = run_module(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny", "--round2"],
        tmp_path,
        timeout=900,
        OUT=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check_round2.json").read_text())
    assert set(r["errors"]) <= {k for k in r["errors"] if "float8" in k}, r["errors"]
    assert len(r["cases"]) + len(r["errors"]) == 9
    prof = next(c["profile"] for n, c in r["cases"].items() if n.endswith("+ profile"))
    assert prof["kernel_ms_per_step"] > 0 and sum(prof["fraction_of_kernel_time"].values()) == pytest.approx(1.0)
    for name, c in r["cases"].items():
        assert c["images_per_s"] > 0, name
