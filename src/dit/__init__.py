"""dit — Scalable Diffusion Models with Transformers (Peebles & Xie, ICCV 2023).

Layout (dependencies run one way, left to right):
``config``/``errors`` ← ``runtime`` ← ``models``, ``diffusion``, ``vae``, ``data`` ←
``train``, ``evaluation`` ← ``cli``.
"""

__version__ = "0.1.0"
