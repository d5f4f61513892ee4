"""Log-likelihood pieces of the variational bound: Gaussian KL and the discretised decoder.

Elementwise torch functions (no reduction), as in ADM's ``losses.py``.
"""

from __future__ import annotations

import math

import torch


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) per element, in nats."""
    tensor = next(x for x in (mean1, logvar1, mean2, logvar2) if isinstance(x, torch.Tensor))
    logvar1, logvar2 = (
        x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=tensor.dtype, device=tensor.device)
        for x in (logvar1, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) via the tanh approximation ADM uses (|error| < 2e-4); kept for bit-faithful losses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def exact_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) = ½(1 + erf(x/√2))."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor, exact_cdf: bool = False
) -> torch.Tensor:
    """log P(bin of x) for data in [-1, 1] quantised to 256 levels (DDPM §3.3), per element.

    The bin is x ± 1/255; the first and last bins extend to ∓∞. ``exact_cdf=False`` uses
    ADM's tanh approximation of Φ (the official loss values); ``True`` uses erf.
    """
    assert x.shape == means.shape == log_scales.shape
    cdf = exact_standard_normal_cdf if exact_cdf else approx_standard_normal_cdf
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_probs = torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log((cdf_plus - cdf_min).clamp(min=1e-12))),
    )
    assert log_probs.shape == x.shape
    return log_probs


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions: (N, ...) → (N,)."""
    return x.mean(dim=tuple(range(1, x.ndim)))
