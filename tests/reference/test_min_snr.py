"""Min-SNR-γ weighting (Hang et al. 2023) of the Gaussian objective's MSE term, against its formula.

SNR(t) = ᾱ_t/(1 − ᾱ_t) from the linear schedule written independently in numpy; the weights are
min(SNR, γ)/SNR (ε), min(SNR, γ)/(SNR + 1) (v) and min(SNR, γ) (x_0), and the loss is
weight · mse + vb with mse and vb unchanged.
"""

import numpy as np
import pytest
import torch

from dit.diffusion import create_diffusion
from tests.reference.diffusion_oracle import GaussianOracle, linear_alphas_cumprod

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

AC = linear_alphas_cumprod()
SNR = AC / (1 - AC)


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("epsilon", lambda g: np.minimum(SNR, g) / SNR),
        ("v", lambda g: np.minimum(SNR, g) / (SNR + 1)),
        ("xstart", lambda g: np.minimum(SNR, g)),
    ],
)
def test_weights_follow_the_papers_formula(prediction, expected):
    d = create_diffusion("", prediction_type=prediction, min_snr_gamma=5.0)
    t = torch.arange(1000)
    torch.testing.assert_close(d.min_snr_weight(t), torch.from_numpy(expected(5.0)))


def test_loss_is_the_weighted_mse_plus_the_unchanged_vb():
    plain, weighted = create_diffusion(""), create_diffusion("", min_snr_gamma=5.0)
    oracle = GaussianOracle(0.1, 0.25, list(range(1000)))
    g = torch.Generator().manual_seed(0)
    x0 = 0.1 + 0.25 * torch.randn((64, 1, 2, 2), generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (64,), generator=g)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    a = plain.training_losses(oracle, x0, t, noise=noise)
    b = weighted.training_losses(oracle, x0, t, noise=noise)
    torch.testing.assert_close(b["mse"], a["mse"])
    torch.testing.assert_close(b["vb"], a["vb"])
    w = torch.from_numpy(np.minimum(SNR, 5.0) / SNR)[t]
    torch.testing.assert_close(b["loss"], w * a["mse"] + a["vb"])
    assert (w < 1).any() and torch.equal(a["loss"], a["mse"] + a["vb"])  # low-noise steps are down-weighted
