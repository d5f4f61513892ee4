"""dit.study.analysis: the correlation against scipy, seed statistics against numpy, and the paper's
findings read from hand-made results."""

import math

import numpy as np
import pytest
from scipy import stats

from dit.study import analysis


def test_pearson_equals_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 3, 12):
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert analysis.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert analysis.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(analysis.pearson([1.0], [2.0])) and math.isnan(analysis.pearson([1, 1, 1], [1, 2, 3]))


def test_mean_std_is_numpys_sample_std():
    assert analysis.mean_std([1.0, 2.0, 6.0]) == pytest.approx((3.0, float(np.std([1.0, 2.0, 6.0], ddof=1))))
    assert analysis.mean_std([4.0]) == (4.0, 0.0)


def test_interpolation_is_linear_in_log_x():
    xs, ys = [10.0, 1000.0], [50.0, 10.0]
    assert analysis.interpolate_log(xs, ys, 100.0) == pytest.approx(30.0)  # halfway in log10
    assert analysis.interpolate_log(xs, ys, 10.0) == pytest.approx(50.0)
    assert analysis.interpolate_log(xs, ys, 5.0) is None and analysis.interpolate_log(xs, ys, 2000.0) is None


def run(model, block, seed, gflops, fids, grids, steps=(100, 200)):
    """A results.json run entry with just what analysis reads."""
    per_step = 6 * gflops * 1e9 * 32
    return {
        "id": f"{model}-p4-{block}-fast-s{seed}",
        "variant": f"{model}-p4-{block}-fast",
        "label": f"{model}/4 {block}",
        "grids": grids,
        "model": model,
        "patch_size": 4,
        "block": block,
        "recipe": "fast",
        "seed": seed,
        "gflops": gflops,
        "params": 1000,
        "evaluations": [
            {"step": s, "fid": f, "class_accuracy": 0.9, "train_flops": s * per_step} for s, f in zip(steps, fids)
        ],
    }


def results(design_fids, size_fids):
    runs = []
    for seed in (0, 1):
        for block, fid in design_fids.items():
            runs.append(run("w128", block, seed, 0.0135, [2 * fid, fid + seed], ["designs"]))
        for (model, gflops), fid in size_fids.items():
            runs.append(run(model, "adaln-zero", seed, gflops, [2 * fid, fid + seed], ["sizes"]))
    return {"runs": runs}


def test_curves_average_over_seeds():
    res = results({"adaln-zero": 10.0, "adaln": 20.0}, {})
    (c, _) = [analysis.curve(rs) for rs in analysis.variants(res["runs"]).values()]
    assert [(p.x, p.mean, p.n) for p in c] == [(100, 20.0, 2), (200, 10.5, 2)]
    assert c[1].std == pytest.approx(np.std([10.0, 11.0], ddof=1))


def test_findings_reproduced_and_not():
    sizes = {("w64", 0.0035): 40.0, ("w128", 0.0135): 20.0, ("w192", 0.03): 12.0}
    f = analysis.findings(results({"adaln-zero": 10.0, "adaln": 20.0, "in-context": 30.0}, sizes))
    assert f["adaln_zero_best"]["reproduced"] and [r["block"] for r in f["adaln_zero_best"]["ranking"]] == [
        "adaln-zero",
        "adaln",
        "in-context",
    ]
    g = f["fid_falls_with_gflops"]
    expected = stats.pearsonr(np.log10([0.0035, 0.0135, 0.03]), [40.5, 20.5, 12.5])[0]
    assert g["reproduced"] and g["pearson_log_gflops"] == pytest.approx(expected)
    f = analysis.findings(results({"adaln-zero": 30.0, "adaln": 20.0}, {("w64", 0.0035): 10.0, ("w192", 0.03): 50.0}))
    assert not f["adaln_zero_best"]["reproduced"] and not f["fid_falls_with_gflops"]["reproduced"]
    stopped = results({"adaln-zero": 30.0, "adaln": 20.0}, {})
    for r in stopped["runs"]:
        r["done"] = r["block"] == "adaln-zero"  # the adaLN runs stopped mid-way: not compared
    assert "adaln_zero_best" not in analysis.findings(stopped)


def test_equal_compute_interpolates_every_size_at_the_smallest_final_compute():
    sizes = {("w64", 0.01): 40.0, ("w192", 0.015): 20.0}
    eq = analysis.equal_compute(results({}, sizes))
    small_final = 200 * 6 * 0.01e9 * 32
    assert eq["train_flops"] == pytest.approx(small_final)
    big = [r for r in eq["rows"] if r["label"].startswith("w192")][0]
    # w192 reaches that compute at step 200 * 0.01 / 0.015 = 133.3: between its steps 100 (FID 40) and 200 (20.5)
    t = math.log(200 / 1.5 / 100) / math.log(2)
    assert big["fid"] == pytest.approx(40.0 + t * (20.5 - 40.0))
    no_overlap = analysis.equal_compute(results({}, {("w64", 0.001): 40.0, ("w192", 0.1): 20.0}))
    assert no_overlap is None
