"""dit.weights: every weight-file format of DiT, read and written (official ``.pt``, our checkpoints,
safetensors, diffusers folders).

It sits above ``models`` and ``vae`` (it builds models and, for a diffusers pipeline, reads the
VAE) and below ``train``/``evaluation``/``cli``:

* :mod:`dit.weights.formats` — ``load_model`` (any file → :class:`~dit.weights.formats.LoadedModel`);
* :mod:`dit.weights.diffusers_keys` — official ⇄ diffusers key and config mapping;
* :mod:`dit.weights.export` — writers and ``convert_checkpoint`` (``dit convert``).
"""
