"""dit.models.flops and `dit flops`: the analytic MAC count against torch's FlopCounterMode, and
against the paper's Table 4 / Fig. 5 numbers."""

import dataclasses

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dit.cli import main as cli_main
from dit.config import ModelConfig
from dit.models import BLOCK_DESIGNS, build_model, model_names
from dit.models.flops import (
    count_params,
    flops_table,
    forward_macs,
    paper_params_m,
)

TINY = ModelConfig(name=None, input_size=8, patch_size=2, hidden_size=16, depth=2, num_heads=2, num_classes=10)


def counted_macs(cfg: ModelConfig) -> float:
    """Second path: torch's FlopCounterMode on a real forward (math SDPA so attention is counted) / 2."""
    model = build_model(cfg).eval()
    h, w = (cfg.input_size, cfg.input_size) if isinstance(cfg.input_size, int) else cfg.input_size
    x = torch.randn(1, cfg.in_channels, h, w)  # (1, C, H, W): one image
    y = torch.zeros(1, dtype=torch.long) if cfg.num_classes else None
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(x, torch.tensor([10]), y)
    return counter.get_total_flops() / 2  # FlopCounterMode counts 2 flops per multiply-accumulate


@pytest.mark.parametrize("block", BLOCK_DESIGNS)
@pytest.mark.parametrize(
    "changes",
    [{}, {"num_classes": 0}, {"input_size": (8, 12), "learn_sigma": False}, {"patch_size": 4, "mlp_ratio": 2.0}],
)
def test_analytic_macs_equal_flop_counter(block, changes):
    cfg = dataclasses.replace(TINY, block=block, **changes)
    assert forward_macs(cfg) == counted_macs(cfg)


# The paper's numbers, copied here from the paper (not read from dit.models.flops, the module under test).
# Table 4 (256×256, adaLN-Zero), Gflops per image; DiT-L/8 is printed as 5.73 but is 5.01 by every count
# (DESIGN.md), so the test holds 5.01 and checks the printed value separately.
PAPER_GFLOPS = {
    "DiT-XL/2": 118.64, "DiT-XL/4": 29.05, "DiT-XL/8": 7.39,
    "DiT-L/2": 80.71, "DiT-L/4": 19.70, "DiT-L/8": 5.01,
    "DiT-B/2": 23.01, "DiT-B/4": 5.56, "DiT-B/8": 1.42,
    "DiT-S/2": 6.06, "DiT-S/4": 1.41, "DiT-S/8": 0.36,
}  # fmt: skip
PAPER_PARAMS_M = {"XL": 675.0, "L": 458.0, "B": 130.0, "S": 33.0}  # Table 1, millions
PAPER_XL2_512_GFLOPS = 524.6  # XL/2 at 512×512
PAPER_BLOCK_GFLOPS = {"in-context": 119.4, "cross-attn": 137.6, "adaln": 118.6, "adaln-zero": 118.6}  # Fig. 5


def test_the_modules_paper_table_is_the_papers():
    """What `dit flops` prints beside our counts is the paper's table (a typo there would mislead every user)."""
    from dit.models import flops

    assert flops.PAPER_GFLOPS == PAPER_GFLOPS and flops.PAPER_XL2_512_GFLOPS == PAPER_XL2_512_GFLOPS
    assert flops.PAPER_BLOCK_GFLOPS == PAPER_BLOCK_GFLOPS and flops.L8_PRINTED_GFLOPS == 5.73
    assert {name: paper_params_m(name) for name in model_names()} == {
        name: PAPER_PARAMS_M[name.split("-")[1].split("/")[0]] for name in model_names()
    }


@pytest.mark.parametrize("name", model_names())
def test_table4_gflops_and_params(name):
    rows = flops_table([name], image_size=256)
    (row,) = rows
    assert abs(row.gflops / PAPER_GFLOPS[name] - 1) < 0.01
    assert abs(row.params / 1e6 / PAPER_PARAMS_M[name.split("-")[1].split("/")[0]] - 1) < 0.02
    assert row.gflops_rel_diff == pytest.approx(row.gflops / row.paper_gflops - 1)


def test_official_code_counts_from_design_doc():
    # DESIGN.md: counting the official code gives XL/2 = 118.62 and S/2 = 6.06 Gflops (2 decimals).
    assert round(forward_macs(ModelConfig(name="DiT-XL/2")) / 1e9, 2) == 118.62
    assert round(forward_macs(ModelConfig(name="DiT-S/2")) / 1e9, 2) == 6.06
    assert PAPER_GFLOPS["DiT-L/8"] == 5.01  # the erratum, not the printed 5.73


def test_xl2_at_512():
    assert abs(forward_macs(ModelConfig(name="DiT-XL/2", input_size=64)) / 1e9 / PAPER_XL2_512_GFLOPS - 1) < 0.01


@pytest.mark.parametrize("block", BLOCK_DESIGNS)
def test_block_designs_match_figure5(block):
    (row,) = flops_table(["DiT-XL/2"], block=block)
    assert row.paper_gflops is not None  # the table shows the paper's figure beside ours
    assert abs(row.gflops / PAPER_BLOCK_GFLOPS[block] - 1) < 0.02


def test_count_params_is_exact():
    model = build_model(TINY)
    assert count_params(TINY) == sum(p.numel() for p in model.parameters())
    assert count_params(ModelConfig(name="DiT-XL/2")) == 675129632  # official state dict total


def test_cli_prints_all_twelve_rows_and_the_erratum(capsys):
    assert cli_main.main(["flops"]) == 0
    out = capsys.readouterr().out
    for name in model_names():
        assert f"{name} " in out
    assert "5.73" in out and "5.01" in out
    xl2 = next(line for line in out.splitlines() if line.startswith("DiT-XL/2 "))
    assert "118.62" in xl2 and "118.64" in xl2 and "256" in xl2


def test_cli_single_model_and_bad_input(capsys):
    assert cli_main.main(["flops", "--model", "DiT-XL/2", "--image-size", "512"]) == 0
    assert "524.6" in capsys.readouterr().out
    for argv in (["--model", "DiT-Q/2"], ["--image-size", "100"], ["--block", "film"], ["--num-classes", "-1"]):
        assert cli_main.main(["flops", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
