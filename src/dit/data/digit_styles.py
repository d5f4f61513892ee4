"""Harder, MNIST-like renderings of the bundled 8×8 digits: jittered strokes, pose and colour.

Why: the bundled digits upsampled by bicubic are blurry, perfectly centred blobs — far easier to
model than a real small dataset such as MNIST or Fashion-MNIST. To size models and recipes for
real data (and to benchmark them) without a download, :func:`render_digits` draws each original
digit ``copies`` times with the variation real scans have:

* **crisp strokes of random thickness**: the digit is upsampled (bicubic) into a glyph box of
  ``GLYPH_FRACTION`` of the side (MNIST: a 20 px box in 28 px) and passed through a soft
  threshold whose level sets how thick the stroke is;
* **pose**: a random rotation, anisotropic scale, slant (shear) and shift, applied by bilinear
  resampling (``torch.nn.functional.grid_sample``);
* **noise**: Gaussian pixel noise;
* ``flat=True`` (``style="flat"``): no pixel noise, and every pixel below ``FLAT_FLOOR`` of full
  ink set to exactly 0 — a clean, flat background around anti-aliased strokes, as a real scan
  after thresholding (MNIST is 0 on about 80% of its pixels). A sampler that leaves grain on a
  flat background is seen here; under the jittered styles' noise it is not;
* ``rgb=True``: a random ink colour on a random background colour (at least ``MIN_CONTRAST``
  apart in luma, so the digit stays readable), independent of the class — the model has to learn
  the shape, not a colour.

Everything is drawn from one ``torch.Generator`` seeded by ``seed``: the same call gives the same
images bit for bit. Pure function of its inputs; writing files is :mod:`dit.data.digits`' job.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

STYLES = ("plain", "jitter", "jitter-rgb", "flat")
GLYPH_FRACTION = 0.68  # the upsampled digit's box, as a fraction of the image side
STROKE_THRESHOLD = (0.25, 0.6)  # soft-threshold level: low → thick strokes, high → thin ones
STROKE_SOFTNESS = 0.08  # width of the soft threshold (in [0, 1] intensity units)
MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.85, 1.15)
MAX_SHEAR = 0.25  # slant: x += shear · y
MAX_SHIFT_FRACTION = 0.07  # of the image side (±2.2 px at 32 px)
NOISE_STD = 0.04  # Gaussian pixel noise, in [0, 1] intensity units
FLAT_FLOOR = 0.1  # flat style: ink below this (in [0, 1]) is background, exactly 0
MIN_CONTRAST = 0.35  # minimum luma difference between ink and background colours (rgb)
LUMA = (0.299, 0.587, 0.114)


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _strokes(images: torch.Tensor, image_size: int, g: torch.Generator) -> torch.Tensor:
    """(N, 8, 8) in [0, 1] → (N, 1, S, S) in [0, 1]: upsampled into the glyph box, soft-thresholded, centred."""
    n = images.shape[0]
    box = max(4, round(GLYPH_FRACTION * image_size))
    up = F.interpolate(images[:, None], size=(box, box), mode="bicubic", align_corners=False)  # (N, 1, b, b)
    up = up.clamp(0, 1)
    level = _uniform(g, n, *STROKE_THRESHOLD).to(up.dtype).view(n, 1, 1, 1)
    ink = torch.sigmoid((up - level) / STROKE_SOFTNESS)  # (N, 1, b, b)
    lo = (image_size - box) // 2
    return F.pad(ink, (lo, image_size - box - lo, lo, image_size - box - lo))  # (N, 1, S, S)


def _pose(ink: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random rotation, scale, slant and shift of (N, 1, S, S) by bilinear resampling."""
    n = ink.shape[0]
    angle = _uniform(g, n, -MAX_ROTATION_DEG, MAX_ROTATION_DEG) * math.pi / 180
    sx, sy = _uniform(g, n, *SCALE_RANGE), _uniform(g, n, *SCALE_RANGE)
    shear = _uniform(g, n, -MAX_SHEAR, MAX_SHEAR)
    shift = _uniform(g, 2 * n, -2 * MAX_SHIFT_FRACTION, 2 * MAX_SHIFT_FRACTION).view(n, 2)  # grid units: side = 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map A = R · Shear · Scale (output = A · input + shift); grid_sample needs its inverse
    fwd = torch.zeros(n, 2, 2, dtype=torch.float64)
    fwd[:, 0, 0], fwd[:, 0, 1] = cos * sx, (cos * shear - sin) * sy
    fwd[:, 1, 0], fwd[:, 1, 1] = sin * sx, (sin * shear + cos) * sy
    inv = torch.linalg.inv(fwd)  # (N, 2, 2)
    theta = torch.cat([inv, -(inv @ shift[:, :, None])], dim=2).to(ink.dtype)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(ink.shape), align_corners=False)  # (N, S, S, 2)
    return F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _colours(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ink, background) RGB colours (N, 3) in [0, 1] whose luma differs by at least MIN_CONTRAST."""
    luma = torch.tensor(LUMA, dtype=torch.float64)
    ink = torch.rand(n, 3, generator=g, dtype=torch.float64)
    bg = torch.rand(n, 3, generator=g, dtype=torch.float64)
    for _ in range(64):  # redraw the pairs that are too alike (a handful of rounds in practice)
        bad = ((ink @ luma) - (bg @ luma)).abs() < MIN_CONTRAST
        if not bad.any():
            break
        k = int(bad.sum())
        ink[bad] = torch.rand(k, 3, generator=g, dtype=torch.float64)
        bg[bad] = torch.rand(k, 3, generator=g, dtype=torch.float64)
    else:  # pragma: no cover - needs a pathological generator
        bad = ((ink @ luma) - (bg @ luma)).abs() < MIN_CONTRAST
        ink[bad], bg[bad] = 1.0, 0.0
    return ink, bg


def render_digits(
    images: np.ndarray, image_size: int, copies: int = 1, rgb: bool = False, seed: int = 0, flat: bool = False
) -> np.ndarray:
    """uint8 (N, 8, 8) digits (white ink on black) → uint8 (N·copies, S, S) or (N·copies, S, S, 3).

    Output row ``i · copies + k`` is copy ``k`` of input ``i`` (see the module docstring for what
    varies between copies). Grayscale output is white ink on black, like the input.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)  # (N, 8, 8)
    x = x.repeat_interleave(copies, dim=0)  # (M, 8, 8), M = N·copies
    m = x.shape[0]
    ink = _pose(_strokes(x, image_size, g), g).clamp(0, 1)  # (M, 1, S, S)
    if flat:
        if rgb:
            raise ValueError("the flat style is grayscale (white ink on an exactly black background)")
        ink = torch.where(ink < FLAT_FLOOR, torch.zeros_like(ink), ink)
        return torch.round(ink[:, 0] * 255).to(torch.uint8).numpy()  # (M, S, S)
    if rgb:
        fg, bg = _colours(g, m)
        fg, bg = fg.to(ink.dtype)[:, :, None, None], bg.to(ink.dtype)[:, :, None, None]  # (M, 3, 1, 1)
        out = bg + (fg - bg) * ink  # (M, 3, S, S)
    else:
        out = ink
    out = out + NOISE_STD * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    out = torch.round(out.clamp(0, 1) * 255).to(torch.uint8)
    if rgb:
        return out.permute(0, 2, 3, 1).contiguous().numpy()  # (M, S, S, 3)
    return out[:, 0].numpy()  # (M, S, S)
