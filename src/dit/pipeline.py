"""``dit.Pipeline``: sample a DiT from Python in three lines, with the exact images `dit sample` draws.

    import dit
    pipe = dit.Pipeline.from_pretrained("facebook/DiT-XL-2-256")   # or a checkpoint path
    images = pipe(classes=["golden retriever", 207], num_steps=50, cfg_scale=4.0, seed=0)

A layer above :mod:`dit.evaluation` (and below :mod:`dit.cli`): loading goes through
:func:`dit.sampling.load_for_sampling` and drawing through its
:class:`~dit.sampling.ImageSampler`, the one generation path of `dit sample`, so the
same seed and settings give the same pixels as ``dit sample --class-labels ... --seed ...`` (with
the same batch size; tested). Sample i of a call depends only on the weights, the settings, the
seed and i, never on what else is in the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from dit.config import (
    OUTPUT_TYPES,
    GenerationRequest,
    Precision,
    SampleConfig,
    WeightsChoice,
    api_setting,
    request_from_api,
)
from dit.data.class_names import class_index, default_class_names
from dit.errors import UserError
from dit.sampling import card as protocol
from dit.sampling import (
    ImageSampler,
    Loaded,
    chunk_ranges,
    load_for_sampling,
    make_sampler,
    num_samples_of,
    sample_labels,
)
from dit.sampling.in_memory import StepCallback, generate_images
from dit.sampling.to_file import loaded_card_settings
from dit.sampling.writers import to_uint8
from dit.runtime.distributed import resolve_device

ClassSpec = Union[str, int]
Classes = Union[ClassSpec, Sequence[ClassSpec], None]
API_CFG_SCALE = 4.0  # the official sample.py's guidance for pictures, where the checkpoint records none
_PRECISION_OF_DTYPE: dict[torch.dtype, Precision] = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
}


def precision_of(dtype: Union[torch.dtype, str, None]) -> Precision:
    """``torch.bfloat16``/``"bf16"`` → ``"bf16"`` (the autocast precision names of `dit sample --precision`)."""
    if dtype is None:
        return "fp32"
    if isinstance(dtype, str):
        for name in _PRECISION_OF_DTYPE.values():
            if dtype == name:
                return name
    elif dtype in _PRECISION_OF_DTYPE:
        return _PRECISION_OF_DTYPE[dtype]
    raise UserError(f"dtype {dtype!r} is not supported; use torch.float32, torch.bfloat16 or torch.float16")


class Pipeline:
    """A DiT, its diffusion and its decoder, ready to draw images by class name or id.

    Build it with :meth:`from_pretrained`. ``class_names`` lists the names ``__call__`` accepts
    (ImageNet-1k's for 1000-class models, the image-folder names stored in our checkpoints,
    ``id2label`` of a diffusers pipeline), or is None when the model carries none.
    """

    def __init__(
        self, loaded: Loaded, device: Union[str, torch.device], precision: str = "fp32", weights: WeightsChoice = "ema"
    ):
        self.loaded = loaded
        self.weights = weights  # the set asked for (`dit sample --weights`); files that hold one set load that one
        self.device = torch.device(device)
        self.precision = precision_of(precision)
        self.num_classes = int(loaded.model_config.num_classes)
        self.class_names: Optional[list[str]] = default_class_names(self.num_classes, loaded.checkpoint.class_names)
        self.path = Path(loaded.checkpoint.path)
        self._sha256: Optional[str] = loaded.checkpoint.sha256  # verified at load when a checksum was saved

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: Union[str, Path],
        weights: WeightsChoice = "ema",
        device: Union[str, torch.device, None] = None,
        revision: Optional[str] = None,
        *,
        model: Optional[str] = None,
        image_size: Optional[int] = None,
        num_classes: Optional[int] = None,
        vae: Optional[str] = None,
    ) -> "Pipeline":
        """Load any file `dit sample --ckpt` loads, or a Hugging Face hub id (at ``revision``).

        Our training checkpoints and ``.safetensors`` exports, official ``.pt`` files (name the size
        with ``model``/``image_size`` when it is not XL/2-256), diffusers folders and hub repos
        (``facebook/DiT-XL-2-256``). ``weights``: ``"ema"`` (default) or ``"model"``. ``vae``
        overrides the decoder (default: the one the checkpoint records, ``mse`` for official files).
        ``device`` defaults to CUDA when available. Nothing is unpickled beyond tensors.
        """
        dev = resolve_device(device)  # an unknown name or a missing GPU: one line, not torch's traceback
        cfg = SampleConfig(
            ckpt=str(path_or_hub_id),
            model=model,
            image_size=image_size,
            num_classes=num_classes,
            weights=weights,
            vae=vae,
        )
        return cls(load_for_sampling(cfg, dev, revision), dev, weights=weights)

    # -- classes --------------------------------------------------------------------------------

    def class_index(self, name_or_id: ClassSpec) -> int:
        """The label id of a class name (case-insensitive; ImageNet synonyms too) or of an id; UserError if unknown."""
        return class_index(name_or_id, self.num_classes, self.class_names)

    # -- device and precision -------------------------------------------------------------------

    def to(self, device: Union[str, torch.device], dtype: Union[torch.dtype, str, None] = None) -> "Pipeline":
        """Move model and decoder to ``device``; ``dtype`` (bf16/fp16) sets the DiT's autocast precision.

        The weights stay float32 and the VAE decodes in float32, as ``dit sample --precision`` does.
        """
        self.device = resolve_device(device, what="Pipeline.to device")  # a bad name: one line, nothing moved
        self.loaded.model.to(self.device)
        self.loaded.codec.to(self.device)
        if dtype is not None:
            self.precision = precision_of(dtype)
        return self

    # -- drawing --------------------------------------------------------------------------------

    def request(
        self, classes: Union[ClassSpec, Sequence[ClassSpec], None] = None, **settings: Any
    ) -> GenerationRequest:
        """The :class:`GenerationRequest` of API keyword arguments, validated.

        ``classes`` are names or ids (resolved here); every other setting is a request field by its
        API name (``num_images``, ``num_steps``, ``sampler``, ``cfg_scale``, ``eta``, ``time_shift``, ...;
        ``dit.config.API_FIELDS`` lists them). Defaults are `dit sample`'s (the checkpoint's sampler, steps and
        guidance) except guidance where the checkpoint records none (:data:`API_CFG_SCALE`, the official
        sample.py's 4) and the precision set by :meth:`to`.
        """
        if isinstance(classes, (str, int)):
            classes = [classes]
        labels = tuple(self.class_index(c) for c in classes) if classes else None
        guidance = {"cfg_scale": API_CFG_SCALE} if self.loaded.defaults.cfg_scale is None else {}
        settings = {**guidance, **{k: v for k, v in settings.items() if v is not None}}  # None: the default
        return request_from_api(GenerationRequest(precision=self.precision), classes=labels, **settings).validate(
            api_setting
        )

    def generate(self, request: GenerationRequest, callback: Optional[StepCallback] = None) -> tuple[Any, dict]:
        """Draw ``request``: (its images in ``request.output_type``, the protocol card `dit sample` writes).

        ``callback(step_index, total_steps, x0_prediction)`` runs after every sampler step
        (``x0_prediction``: the current batch's predicted latents (B, C, h, w); batches of
        ``batch_size`` run one after another, so ``step_index`` counts over all of them); an exception
        raised in it stops the draw.
        """
        drawer = make_sampler(self.loaded, request.validate(), self.device)
        n = num_samples_of(request.num_samples, request.class_labels)
        labels = sample_labels(n, drawer.num_classes, request.class_labels)
        images = generate_images(drawer, labels, n, request.batch_size, callback=callback)  # (N, H, W, 3) uint8
        assert images is not None  # one process draws every chunk
        return convert_images(images, request.output_type), self._card(drawer, request, n, "")

    def __call__(
        self,
        classes: Classes = None,
        num_steps: Optional[int] = None,
        cfg_scale: Optional[float] = None,
        sampler: Optional[str] = None,
        seed: Optional[int] = None,
        guidance_interval: Optional[Sequence[int]] = None,
        output_type: Optional[str] = None,
        callback: Optional[StepCallback] = None,
        **settings: Any,
    ):
        """Draw one image per entry of ``classes`` (names or ids; ``num_images`` cycles through them).

        Without ``classes``: ``num_images`` (default 16) images, classes balanced (i mod num_classes),
        or an unconditional model's samples. ``num_steps``/``sampler`` default to the checkpoint's
        (``ddpm`` 250 for gaussian checkpoints, ``heun-x0`` 10 for fast-recipe ones, ...); ``cfg_scale``
        (default: the checkpoint's, else 4) 1 turns guidance off; ``guidance_interval=(lo, hi)`` guides only
        for lo <= t <= hi. ``output_type``:
        ``"pil"`` (default: a list of PIL images), ``"np"`` (uint8 (N, H, W, 3), what `dit sample`
        writes) or ``"pt"`` (float32 (N, 3, H, W) in [0, 1], the same pixels / 255). Any other request
        setting by its API name (``num_images``, ``eta``, ``batch_size``, ...). ``callback``: see
        :meth:`generate`. Shorthand for ``pipe.generate(pipe.request(...))[0]``.
        """
        named: dict[str, Any] = dict(num_steps=num_steps, cfg_scale=cfg_scale, sampler=sampler, seed=seed)
        named.update(guidance_interval=guidance_interval, output_type=output_type)
        return self.generate(self.request(classes, **named, **settings), callback)[0]

    def decode(self, latents: torch.Tensor, output_type: str = "pil"):
        """Latents (B, C, h, w) (e.g. a callback's x0 prediction) as images, for previews."""
        with torch.no_grad():
            x = self.loaded.codec.decode(latents.to(self.device))  # (B, 3, H, W) in [-1, 1]
        return convert_images(to_uint8(x).numpy(), output_type)

    # -- the protocol card ----------------------------------------------------------------------

    def checkpoint_sha256(self) -> str:
        """SHA-256 of the checkpoint file or folder (computed once)."""
        if self._sha256 is None:
            self._sha256 = protocol.file_sha256(self.path)
        return self._sha256

    def protocol_card(self, classes=None, output: str = "", **settings: Any) -> dict:
        """The protocol card `dit sample` writes as ``<out>.protocol.json`` for the same settings
        (those of :meth:`request`), without drawing."""
        request = self.request(classes, **settings)
        drawer = make_sampler(self.loaded, request, self.device)
        return self._card(drawer, request, num_samples_of(request.num_samples, request.class_labels), output)

    def _card(self, drawer: ImageSampler, request: GenerationRequest, n: int, output: str) -> dict:
        settings = loaded_card_settings(self.loaded, self.checkpoint_sha256(), drawer, n, request)
        chunks = len(chunk_ranges(n, request.batch_size))
        extra = {
            "checkpoint_path": str(self.path.resolve()),
            **protocol.provenance(1, str(self.device)),
            "shards": {"total": chunks, "drawn_now": chunks, "resumed": 0},
        }
        return protocol.make_card(settings, output, extra)

    def __repr__(self) -> str:
        c = self.loaded.model_config
        return (
            f"Pipeline({c.name or 'custom DiT'}, {self.num_classes} classes, input {c.input_size}, "
            f"vae {self.loaded.codec.id}, device {self.device}, precision {self.precision}, from {self.path})"
        )


def convert_images(images: np.ndarray, output_type: str):
    """uint8 (N, H, W, 3) → a list of PIL images, the array itself, or float (N, 3, H, W) in [0, 1]."""
    if output_type == "np":
        return images
    if output_type == "pt":
        return torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    if output_type == "pil":
        from PIL import Image

        return [Image.fromarray(im) for im in images]
    raise UserError(f"output_type {output_type!r} is unknown; use one of {', '.join(OUTPUT_TYPES)}")
