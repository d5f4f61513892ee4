"""dit.study.plots: charts put each series' points where the axes say, with error bars, and the study's
charts are all written."""

import numpy as np

from dit.study.plots import PALETTE, Series, chart, study_charts
from tests.unit.study.test_analysis import results


def colour_rows(image: np.ndarray, colour, column=None) -> np.ndarray:
    """Rows holding ``colour`` (in one ``column`` if given)."""
    hit = (image == np.array(colour, dtype=np.uint8)).all(axis=-1)  # (H, W)
    return np.flatnonzero(hit[:, column] if column is not None else hit.any(axis=1))


def test_chart_draws_points_lines_and_error_bars():
    one = chart([Series("a", [1, 2, 3], [10, 20, 30], [0, 0, 0])], "t", "x", log_y=False)
    bars = chart([Series("a", [1, 2, 3], [10, 20, 30], [0, 0, 8])], "t", "x", log_y=False)
    assert one.shape == (420, 720, 3) and one.dtype == np.uint8
    assert colour_rows(one, PALETTE[0]).size > 0
    # the last point's column (its marker's right edge is the rightmost colour left of the legend, at 720 - 180):
    # a 7-pixel marker alone, or the marker on its error bar
    hit = (one[:, : 720 - 180] == np.array(PALETTE[0], dtype=np.uint8)).all(axis=-1)
    last = int(np.flatnonzero(hit.any(axis=0)).max()) - 3
    marker, bar = colour_rows(one, PALETTE[0], last), colour_rows(bars, PALETTE[0], last)
    assert 0 < np.ptp(marker) <= 7 and np.ptp(bar) > 40
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
