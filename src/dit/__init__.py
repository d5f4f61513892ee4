"""dit — Scalable Diffusion Models with Transformers (Peebles & Xie, ICCV 2023).

Layout (dependencies run one way, left to right):
``config``/``errors`` ← ``runtime`` ← ``models``, ``diffusion``, ``vae``, ``data`` ←
``train``, ``evaluation`` ← ``pipeline`` ← ``demo``, ``serve`` ← ``cli``.

The public Python interface is :class:`dit.Pipeline` (``dit.pipeline``), imported on first use so
that ``import dit`` (and ``dit --help``) stays fast.
"""

__version__ = "0.1.0"
__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str):
    if name == "Pipeline":
        from dit.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'dit' has no attribute {name!r}")
