"""Gaussian diffusion (DDPM / Improved DDPM / ADM semantics, as used by DiT).

``GaussianDiffusion`` holds the schedule tables and implements the forward process
q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0), the model's p(x_{t-1} | x_t), the training
loss L_simple + L_vlb, the full-bound likelihood and the two ADM samplers (DDPM ancestral and
DDIM). Timestep indices ``t`` here are positions 0..num_timesteps-1 *in this process*; the
respaced subclass (``respace.SpacedDiffusion``) maps them to the model's original timesteps.

A model is any callable ``model(x, t, **model_kwargs)`` returning (N, C, ...) — or (N, 2C, ...)
when the variance is learned (ε/x_0/v first, the variance interpolation v ∈ [-1, 1] second).

Note on ``clip_denoised``: it clamps the predicted x_0 to [-1, 1] and defaults to True as in
ADM, which is right for pixels. Latents (DiT) are not in [-1, 1]: pass ``clip_denoised=False``
as the official DiT sampler does.
"""

from __future__ import annotations

import enum
import math
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from dit.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from dit.diffusion.noise import Generator, draw_noise, progress_bar


class ModelMeanType(enum.Enum):
    """What the network's first C output channels predict."""

    EPSILON = "epsilon"  # the noise ε (DiT)
    START_X = "xstart"  # x_0
    VELOCITY = "v"  # v = √ᾱ ε − √(1−ᾱ) x_0 (Salimans & Ho 2022)


class ModelVarType(enum.Enum):
    """How Σ_θ(x_t, t) is obtained."""

    LEARNED = "learned"  # the network outputs log Σ directly
    LEARNED_RANGE = "learned_range"  # log Σ = f log β_t + (1−f) log β̃_t, f = (v+1)/2 (DiT)
    FIXED_SMALL = "fixed_small"  # Σ = β̃_t (posterior variance)
    FIXED_LARGE = "fixed_large"  # Σ = β_t (β̃_1 at t = 0)


class LossType(enum.Enum):
    MSE = "mse"  # L_simple (+ L_vlb when Σ is learned)
    RESCALED_MSE = "rescaled_mse"  # same, vb term × T/1000
    KL = "kl"  # the full variational bound
    RESCALED_KL = "rescaled_kl"  # the bound × T

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


def extract(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """arr[t] shaped (N, 1, ..., 1) to broadcast against ``like``, in like's dtype and device.

    The float64 table is cast on the CPU (some devices lack float64) and the copy is cached on
    the table itself per device and dtype, so sampling on an accelerator indexes on the device
    without a host sync per step, and the copies live exactly as long as the diffusion.
    """
    copies = arr.__dict__.setdefault("_dit_copies", {})
    key = (like.device, like.dtype)
    if key not in copies:
        copies[key] = arr.to(dtype=like.dtype).to(like.device)
    out = copies[key][t.to(like.device).long()]  # (N,)
    return out.view(-1, *([1] * (like.ndim - 1)))


class GaussianDiffusion:
    """A discrete-time Gaussian diffusion with T steps defined by ``betas`` (float64, (T,))."""

    # The float64 (T,) tables, set in __init__ from its ``tables``.
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    log_betas: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    fixed_large_log_variance: torch.Tensor

    def __init__(
        self,
        *,
        betas: np.ndarray,
        model_mean_type: ModelMeanType = ModelMeanType.EPSILON,
        model_var_type: ModelVarType = ModelVarType.LEARNED_RANGE,
        loss_type: LossType = LossType.MSE,
        min_snr_gamma: Optional[float] = None,
    ):
        betas = np.asarray(betas, dtype=np.float64)
        assert betas.ndim == 1 and (betas > 0).all() and (betas <= 1).all()
        self.model_mean_type, self.model_var_type, self.loss_type = model_mean_type, model_var_type, loss_type
        self.min_snr_gamma = min_snr_gamma  # None: L_simple unweighted (the paper)
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)  # β̃_t
        tables = dict(
            betas=betas,
            alphas_cumprod=ac,
            alphas_cumprod_prev=ac_prev,
            sqrt_alphas_cumprod=np.sqrt(ac),
            sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
            sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac),
            sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1.0),
            posterior_variance=post_var,
            # β̃_0 = 0, so its log is clipped to the value at t = 1 (ADM).
            posterior_log_variance_clipped=np.log(np.append(post_var[1], post_var[1:]))
            if len(betas) > 1
            else np.log(betas),
            posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
            posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            log_betas=np.log(betas),
            log_one_minus_alphas_cumprod=np.log(1.0 - ac),
            # fixed-large Σ = β_t, with β̃_1 at t = 0 (ADM: a better decoder variance)
            fixed_large_log_variance=np.log(np.append(post_var[1], betas[1:])) if len(betas) > 1 else np.log(betas),
        )
        for name, arr in tables.items():
            setattr(self, name, torch.from_numpy(arr))  # float64 (T,)

    # ---- model interface (overridden by SpacedDiffusion to map timesteps) ----
    def _wrap_model(self, model: Callable) -> Callable:
        return model

    # ---- forward process ----
    def q_mean_variance(self, x_start, t):
        """Mean, variance and log-variance of q(x_t | x_0)."""
        mean = extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
        variance = extract(1.0 - self.alphas_cumprod, t, x_start)
        log_variance = extract(self.log_one_minus_alphas_cumprod, t, x_start)
        return mean, variance, log_variance

    def q_sample(self, x_start, t, noise=None):
        """x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε."""
        if noise is None:
            noise = torch.randn_like(x_start)
        assert noise.shape == x_start.shape
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7)."""
        mean = extract(self.posterior_mean_coef1, t, x_t) * x_start + extract(self.posterior_mean_coef2, t, x_t) * x_t
        variance = extract(self.posterior_variance, t, x_t)
        log_variance = extract(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    # ---- conversions between parameterisations ----
    def predict_xstart_from_eps(self, x_t, t, eps):
        return (
            extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )

    def predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return (extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, x_t
        )

    def predict_xstart_from_v(self, x_t, t, v):
        """x_0 = √ᾱ x_t − √(1−ᾱ) v."""
        return extract(self.sqrt_alphas_cumprod, t, x_t) * x_t - extract(self.sqrt_one_minus_alphas_cumprod, t, x_t) * v

    def v_target(self, x_start, t, noise):
        """v = √ᾱ ε − √(1−ᾱ) x_0."""
        return (
            extract(self.sqrt_alphas_cumprod, t, x_start) * noise
            - extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * x_start
        )

    def pred_xstart_from_output(self, x_t, t, output):
        """x_0 predicted from the network's mean channels, whatever they parameterise."""
        if self.model_mean_type == ModelMeanType.EPSILON:
            return self.predict_xstart_from_eps(x_t, t, output)
        if self.model_mean_type == ModelMeanType.VELOCITY:
            return self.predict_xstart_from_v(x_t, t, output)
        return output

    def split_output(self, model_output, x):
        """(mean channels, variance channels or None) of a raw model output."""
        C = x.shape[1]
        if self.model_var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE):
            assert model_output.shape[1] == 2 * C, f"learned Σ needs 2C={2 * C} channels, got {model_output.shape[1]}"
            return model_output[:, :C], model_output[:, C:]
        return model_output[:, :C], None

    # ---- reverse process ----
    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """p(x_{t-1} | x_t): dict of mean, variance, log_variance, pred_xstart (ADM)."""
        model_kwargs = model_kwargs or {}
        model_output = self._wrap_model(model)(x, t, **model_kwargs)
        return self._p_mean_variance_from_output(model_output, x, t, clip_denoised, denoised_fn)

    def _p_mean_variance_from_output(self, model_output, x, t, clip_denoised=True, denoised_fn=None):
        mean_out, var_out = self.split_output(model_output, x)
        if self.model_var_type == ModelVarType.LEARNED:
            log_var = var_out
        elif self.model_var_type == ModelVarType.LEARNED_RANGE:
            min_log = extract(self.posterior_log_variance_clipped, t, x)
            max_log = extract(self.log_betas, t, x)
            frac = (var_out + 1) / 2  # v ∈ [-1, 1] → f ∈ [0, 1]
            log_var = frac * max_log + (1 - frac) * min_log
        elif self.model_var_type == ModelVarType.FIXED_LARGE:
            log_var = extract(self.fixed_large_log_variance, t, x) * torch.ones_like(x)
        else:
            log_var = extract(self.posterior_log_variance_clipped, t, x) * torch.ones_like(x)

        pred_xstart = self.pred_xstart_from_output(x, t, mean_out)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var, "pred_xstart": pred_xstart}

    # ---- training ----
    def _vb_terms_bpd(self, model_output, x_start, x_t, t, clip_denoised=False):
        """One term of L_vlb in bits/dim: KL(q(x_{t-1}|x_t,x_0) ‖ p) for t>0, decoder NLL at t=0."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self._p_mean_variance_from_output(model_output, x_t, t, clip_denoised)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = mean_flat(decoder_nll) / math.log(2.0)
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        """Per-example losses (N,): ``loss``, plus ``mse`` and ``vb`` for the MSE loss types.

        MSE types: ``mse`` is the mean over all non-batch dims of (target − output)², the target
        being ε, x_0 or v; when Σ is learned ``vb`` is the L_vlb term computed with the mean
        channels detached (it trains Σ only) and ``loss = mse + vb``. KL types: ``loss`` is the
        bound itself.
        """
        model_kwargs = model_kwargs or {}
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        model_output = self._wrap_model(model)(x_t, t, **model_kwargs)
        terms = {}
        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model_output, x_start, x_t, t)["output"]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms
        mean_out, var_out = self.split_output(model_output, x_t)
        if var_out is not None:
            frozen = torch.cat([mean_out.detach(), var_out], dim=1)  # stop-gradient on ε inside L_vlb
            terms["vb"] = self._vb_terms_bpd(frozen, x_start, x_t, t)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)
        target = {
            ModelMeanType.EPSILON: noise,
            ModelMeanType.START_X: x_start,
            ModelMeanType.VELOCITY: self.v_target(x_start, t, noise),
        }[self.model_mean_type]
        assert target.shape == mean_out.shape == x_start.shape
        terms["mse"] = mean_flat((target - mean_out) ** 2)
        simple = terms["mse"] if self.min_snr_gamma is None else self.min_snr_weight(t).to(terms["mse"]) * terms["mse"]
        terms["loss"] = simple + terms["vb"] if "vb" in terms else simple
        return terms

    def min_snr_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Min-SNR-γ weights (Hang et al. 2023, eq. 11) of the MSE term at timesteps t (N,), float64.

        With SNR(t) = ᾱ_t/(1 − ᾱ_t): ε-prediction min(SNR, γ)/SNR, v-prediction min(SNR, γ)/(SNR + 1),
        x_0-prediction min(SNR, γ): each equals min(SNR, γ) on the x_0-error scale.
        """
        ac = self.alphas_cumprod.to(t.device)[t]  # (N,)
        snr = ac / (1.0 - ac)
        if self.min_snr_gamma is None:
            raise ValueError("min_snr_weight needs a diffusion built with min_snr_gamma")
        clipped = snr.clamp(max=float(self.min_snr_gamma))
        if self.model_mean_type == ModelMeanType.EPSILON:
            return clipped / snr
        if self.model_mean_type == ModelMeanType.VELOCITY:
            return clipped / (snr + 1.0)
        return clipped

    # ---- likelihood ----
    def _prior_bpd(self, x_start):
        """KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim, (N,)."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, dtype=torch.long, device=x_start.device)
        mean, _, log_var = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, log_var, torch.zeros_like(mean), 0.0)) / math.log(2.0)

    @torch.no_grad()
    def calc_bpd_loop(self, model, x_start, clip_denoised=True, model_kwargs=None, generator: Generator = None):
        """The whole variational bound in bits/dim: dict of total_bpd, prior_bpd (N,), and
        vb, xstart_mse, mse (N, T) per timestep (ADM)."""
        model_kwargs = model_kwargs or {}
        N = x_start.shape[0]
        vb, xstart_mse, mse = [], [], []
        for t in reversed(range(self.num_timesteps)):
            t_batch = torch.full((N,), t, dtype=torch.long, device=x_start.device)
            noise = draw_noise(x_start.shape, generator, x_start.device, x_start.dtype)
            x_t = self.q_sample(x_start, t_batch, noise=noise)
            model_output = self._wrap_model(model)(x_t, t_batch, **model_kwargs)
            out = self._vb_terms_bpd(model_output, x_start, x_t, t_batch, clip_denoised=clip_denoised)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
            eps = self.predict_eps_from_xstart(x_t, t_batch, out["pred_xstart"])
            mse.append(mean_flat((eps - noise) ** 2))
        vb_t, xstart_mse_t, mse_t = (torch.stack(v[::-1], dim=1) for v in (vb, xstart_mse, mse))  # (N, T), t ascending
        prior_bpd = self._prior_bpd(x_start)
        return {
            "total_bpd": vb_t.sum(dim=1) + prior_bpd,
            "prior_bpd": prior_bpd,
            "vb": vb_t,
            "xstart_mse": xstart_mse_t,
            "mse": mse_t,
        }

    # ---- samplers (ADM interface) ----
    def p_sample(
        self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, generator: Generator = None
    ):
        """One ancestral step x_t → x_{t-1} ~ N(μ_θ, Σ_θ); no noise at t = 0 (DDPM Alg. 2)."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = draw_noise(x.shape, generator, x.device, x.dtype)
        nonzero = (t != 0).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def _initial(self, shape, noise, device, generator):
        if noise is not None:
            return noise.to(device) if device is not None else noise
        return draw_noise(shape, generator, device)

    def p_sample_loop(
        self,
        model,
        shape,
        noise=None,
        clip_denoised=True,
        denoised_fn=None,
        model_kwargs=None,
        device=None,
        progress=False,
        generator: Generator = None,
    ):
        """DDPM ancestral sampling over all of this process's steps; returns x_0."""
        final: dict = {}
        for final in self.p_sample_loop_progressive(  # noqa: B007 (the last value is the result)
            model, shape, noise, clip_denoised, denoised_fn, model_kwargs, device, progress, generator
        ):
            pass
        return final["sample"]

    def p_sample_loop_progressive(
        self,
        model,
        shape,
        noise=None,
        clip_denoised=True,
        denoised_fn=None,
        model_kwargs=None,
        device=None,
        progress=False,
        generator: Generator = None,
    ) -> Iterator[dict]:
        """Yields {"sample", "pred_xstart"} after every DDPM step."""
        img = self._initial(shape, noise, device, generator)
        for i in progress_bar(list(range(self.num_timesteps))[::-1], progress, "ddpm"):
            t = torch.full((shape[0],), i, dtype=torch.long, device=img.device)
            with torch.no_grad():
                out = self.p_sample(model, img, t, clip_denoised, denoised_fn, model_kwargs, generator)
            yield out
            img = out["sample"]

    def ddim_sample(
        self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0, generator: Generator = None
    ):
        """One DDIM step (Song et al. 2021, eq. 12) with σ_t = η √((1−ᾱ_{t-1})/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_{t-1})."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])  # consistent with a clipped x_0
        ab = extract(self.alphas_cumprod, t, x)
        ab_prev = extract(self.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean_pred = out["pred_xstart"] * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
        nonzero = (t != 0).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        if eta == 0:
            return {"sample": mean_pred, "pred_xstart": out["pred_xstart"]}
        noise = draw_noise(x.shape, generator, x.device, x.dtype)
        return {"sample": mean_pred + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop(
        self,
        model,
        shape,
        noise=None,
        clip_denoised=True,
        denoised_fn=None,
        model_kwargs=None,
        device=None,
        progress=False,
        eta=0.0,
        generator: Generator = None,
    ):
        """DDIM sampling over all of this process's steps (η = 0: deterministic); returns x_0."""
        final: dict = {}
        for final in self.ddim_sample_loop_progressive(  # noqa: B007 (the last value is the result)
            model, shape, noise, clip_denoised, denoised_fn, model_kwargs, device, progress, eta, generator
        ):
            pass
        return final["sample"]

    def ddim_sample_loop_progressive(
        self,
        model,
        shape,
        noise=None,
        clip_denoised=True,
        denoised_fn=None,
        model_kwargs=None,
        device=None,
        progress=False,
        eta=0.0,
        generator: Generator = None,
    ) -> Iterator[dict]:
        """Yields {"sample", "pred_xstart"} after every DDIM step."""
        img = self._initial(shape, noise, device, generator)
        for i in progress_bar(list(range(self.num_timesteps))[::-1], progress, "ddim"):
            t = torch.full((shape[0],), i, dtype=torch.long, device=img.device)
            with torch.no_grad():
                out = self.ddim_sample(model, img, t, clip_denoised, denoised_fn, model_kwargs, eta, generator)
            yield out
            img = out["sample"]
