"""dit.study.plots: charts put each series' points where the axes say, with error bars, and the study's
charts are all written."""

import numpy as np

from dit.study.plots import PALETTE, Series, chart, study_charts
from tests.unit.study.test_analysis import results


def colour_rows(image: np.ndarray, colour) -> np.ndarray:
    return np.flatnonzero((image == np.array(colour, dtype=np.uint8)).all(axis=-1).any(axis=1))


def test_chart_draws_points_lines_and_error_bars():
    one = chart([Series("a", [1, 2, 3], [10, 20, 30], [0, 0, 0])], "t", "x", log_y=False)
    bars = chart([Series("a", [1, 2, 3], [10, 20, 30], [0, 0, 8])], "t", "x", log_y=False)
    assert one.shape == (420, 720, 3) and one.dtype == np.uint8
    rows = colour_rows(one, PALETTE[0])
    assert rows.size > 0
    # the error bar of the last point reaches above the highest point drawn without it
    assert colour_rows(bars, PALETTE[0]).min() < rows.min()
    two = chart([Series("a", [1, 2], [10, 20], [0, 0]), Series("b", [1, 2], [5, 7], [1, 1])], "t", "x")
    assert colour_rows(two, PALETTE[1]).size > 0


def test_study_charts_writes_the_papers_figures(tmp_path):
    res = results({"adaln-zero": 10.0, "adaln": 20.0}, {("w64", 0.0035): 40.0, ("w192", 0.03): 12.0})
    for r in res["runs"]:
        r["sampling_flops_per_image"] = 40 * 2 * r["gflops"] * 1e9
    names = sorted(p.name for p in study_charts(res, tmp_path))
    assert names == [
        "fid_vs_gflops.png",
        "fid_vs_sampling_compute.png",
        "fid_vs_steps_designs.png",
        "fid_vs_steps_sizes.png",
        "fid_vs_training_compute.png",
    ]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
