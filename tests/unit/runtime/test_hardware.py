"""The machine's fast path: CPU flags from /proc/cpuinfo, the cached matmul probe, and the auto choice.

The choice rules are checked against hand-made CPUs (AVX2 only, AVX-512 BF16, AMX) and probes, so
they hold on any machine; the probe's cache is checked by counting how often the probe runs.
"""

import json

import pytest
import torch

from dit.errors import UserError
from dit.runtime.hardware import (
    AUTO_PRECISION_ENV,
    BF16_MARGIN,
    CpuFeatures,
    MatmulProbe,
    cached_probe,
    probe_matmul,
    read_cpu_features,
    resolve_speed,
)

CPU = torch.device("cpu")
AVX2 = CpuFeatures("EPYC", "AVX2", ("avx2",))
AVX512_BF16 = CpuFeatures("SPR VM", "AVX512", ("avx512_bf16", "avx512f", "avx2"))
AMX = CpuFeatures("SPR", "AVX512", ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2"))


@pytest.fixture(autouse=True)
def machine_choice(monkeypatch):
    """These tests check the machine's own choice: a suite run with the choice forced must not change them."""
    monkeypatch.delenv(AUTO_PRECISION_ENV, raising=False)


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    block = f"processor\t: {{}}\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 {flags}\n\n"
    path.write_text(block.format(0) + block.format(1))
    return str(path)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    f = read_cpu_features(_cpuinfo(tmp_path, "avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8"))
    assert f.model == "Test CPU 9000"
    assert f.flags == ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2")
    assert f.amx and f.native_bf16
    f = read_cpu_features(_cpuinfo(tmp_path, "avx2 fma"))
    assert f.flags == ("avx2",) and not f.amx and not f.native_bf16
    # amx_tile alone (no bf16 tiles) is not AMX-BF16
    assert not read_cpu_features(_cpuinfo(tmp_path, "avx2 amx_tile")).amx
    assert read_cpu_features(_cpuinfo(tmp_path, "")).capability == torch.backends.cpu.get_cpu_capability()


def test_probe_is_cached_per_machine_and_survives_a_broken_cache(tmp_path):
    calls = []

    def fake():
        calls.append(1)
        return MatmulProbe(100.0, 50.0, 64, torch.get_num_threads())

    first, hit = cached_probe(AMX, tmp_path, run=fake)
    again, hit2 = cached_probe(AMX, tmp_path, run=fake)
    assert (hit, hit2, len(calls), again) == (False, True, 1, first)
    other, hit3 = cached_probe(AVX512_BF16, tmp_path, run=fake)  # another CPU: its own entry
    assert not hit3 and len(calls) == 2
    assert len(json.loads((tmp_path / "cpu_probe.json").read_text())) == 2
    (tmp_path / "cpu_probe.json").write_text("{not json")
    _, hit4 = cached_probe(AMX, tmp_path, run=fake)
    assert not hit4 and len(calls) == 3


def test_probe_measures_both_precisions():
    p = probe_matmul(size=64, repeats=2)
    assert p.size == 64 and p.threads == torch.get_num_threads()
    assert 0 < p.fp32_gflops < float("inf") and 0 < p.bf16_gflops < float("inf")


def _never(_features):
    raise AssertionError("the probe must not run when the flags settle the choice")


def test_without_hardware_bf16_auto_is_fp32_and_nothing_is_probed():
    for recipe in ("paper", "fast"):
        c = resolve_speed(CPU, "auto", None, recipe, features=AVX2, probe=_never)
        assert (c.precision, c.compile) == ("fp32", False)
        assert "no AMX/AVX512-BF16" in c.reason


@pytest.mark.parametrize("features", [AMX, AVX512_BF16])
def test_with_hardware_bf16_the_probe_decides_for_non_paper_recipes(features):
    fast = lambda f: MatmulProbe(100.0, 100.0 * BF16_MARGIN, 512, 2)  # noqa: E731
    slow = lambda f: MatmulProbe(100.0, 60.0, 512, 2)  # noqa: E731  (measured on an AVX-512 VM without AMX)
    assert resolve_speed(CPU, "auto", None, "fast", features=features, probe=fast).precision == "bf16"
    assert resolve_speed(CPU, "auto", None, "fast", features=features, probe=slow).precision == "fp32"


def test_paper_recipe_stays_fp32_eager_everywhere_and_names_the_faster_flag():
    fast = lambda f: MatmulProbe(100.0, 400.0, 512, 2)  # noqa: E731
    c = resolve_speed(CPU, "auto", None, "paper", features=AMX, probe=fast)
    assert (c.precision, c.compile) == ("fp32", False)
    assert "--precision bf16 would be faster here" in c.reason


def test_given_values_win_over_auto():
    fast = lambda f: MatmulProbe(100.0, 400.0, 512, 2)  # noqa: E731
    c = resolve_speed(CPU, "bf16", True, "paper", features=AVX2, probe=_never)
    assert (c.precision, c.compile, c.reason) == ("bf16", True, "as given")
    c = resolve_speed(CPU, "fp32", None, "fast", features=AMX, probe=fast)
    assert (c.precision, c.compile) == ("fp32", False)
    c = resolve_speed(CPU, "auto", True, "fast", features=AMX, probe=fast)
    assert (c.precision, c.compile) == ("bf16", True)


@pytest.mark.parametrize("forced", ["bf16", "fp32"])
@pytest.mark.parametrize("features", [AVX2, AMX])
def test_the_environment_forces_the_machines_faster_precision_without_probing(monkeypatch, features, forced):
    monkeypatch.setenv(AUTO_PRECISION_ENV, forced.upper())
    c = resolve_speed(CPU, "auto", None, "fast", features=features, probe=_never)
    assert (c.precision, c.compile) == (forced, False) and f"forced by {AUTO_PRECISION_ENV}={forced}" in c.reason
    paper = resolve_speed(CPU, "auto", None, "paper", features=features, probe=_never)
    assert (paper.precision, paper.compile) == ("fp32", False)  # the paper recipe never follows the machine
    assert resolve_speed(CPU, "fp32" if forced == "bf16" else "bf16", False, "fast").reason == "as given"


def test_a_bad_forced_precision_is_one_line(monkeypatch):
    monkeypatch.setenv(AUTO_PRECISION_ENV, "fp8")
    with pytest.raises(UserError, match=f"{AUTO_PRECISION_ENV}='fp8' is not a precision; set it to fp32 or bf16"):
        resolve_speed(CPU, "auto", None, "fast", features=AVX2, probe=_never)
