"""Closed-form optimal denoiser for Gaussian data x_0 ~ N(μ, σ² I), used by the diffusion tests.

For x_t = a x_0 + b ε (a = √ᾱ_t, b = √(1−ᾱ_t)) everything is jointly Gaussian, so
  E[ε | x_t]      = b (x_t − a μ) / (a²σ² + b²)
  Var[x_0 | x_t]  = σ² b² / (a²σ² + b²)
and the true reverse step from kept timestep t to the previous kept one (or to the data)
  Var[x_prev | x_t] = β̃' + c1'² Var[x_0 | x_t]
with the respaced β' = 1 − ᾱ_t/ᾱ_prev, β̃' = β'(1−ᾱ_prev)/(1−ᾱ_t), c1' = √ᾱ_prev β'/(1−ᾱ_t).
Written from these formulas with numpy, independently of ``dit.diffusion``'s tables.
"""

from __future__ import annotations

import numpy as np
import torch


def linear_alphas_cumprod(T: int = 1000) -> np.ndarray:
    betas = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=np.float64)
    return np.cumprod(1.0 - betas)


class GaussianOracle:
    """The optimal ε-model (and learned-range variance) for data N(mu, sigma²) per element."""

    def __init__(self, mu: float, sigma: float, kept: list[int], T: int = 1000, learn_sigma: bool = True):
        self.mu, self.sigma, self.learn_sigma = mu, sigma, learn_sigma
        ac = linear_alphas_cumprod(T)
        self.ac = ac
        kept = sorted(kept)
        ac_k = ac[kept]
        ac_prev = np.append(1.0, ac_k[:-1])
        beta = 1.0 - ac_k / ac_prev
        post = beta * (1.0 - ac_prev) / (1.0 - ac_k)
        post_log_clipped = np.log(np.append(post[1], post[1:]))
        c1 = np.sqrt(ac_prev) * beta / (1.0 - ac_k)
        a2 = ac_k
        var_x0 = sigma**2 * (1 - a2) / (a2 * sigma**2 + (1 - a2))
        self.true_rev_var = post + c1**2 * var_x0  # (K,) Var[x_prev | x_t]
        self.post_var = post
        frac = (np.log(self.true_rev_var) - post_log_clipped) / (np.log(beta) - post_log_clipped)
        self.v = np.full(T, np.nan)
        self.v[kept] = 2 * frac - 1  # learned-range output giving the true variance
        self.kept = kept

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a2 = torch.as_tensor(self.ac, dtype=x.dtype)[t].view(-1, *([1] * (x.ndim - 1)))
        a, b = a2.sqrt(), (1 - a2).sqrt()
        return b * (x - a * self.mu) / (a2 * self.sigma**2 + b**2)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        eps = self.eps(x, t)
        if not self.learn_sigma:
            return eps
        v = torch.as_tensor(self.v, dtype=x.dtype)[t].view(-1, *([1] * (x.ndim - 1))) * torch.ones_like(x)
        assert not torch.isnan(v).any(), "oracle called at a timestep outside its schedule"
        return torch.cat([eps, v], dim=1)  # (N, 2C, ...)
