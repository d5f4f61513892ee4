"""dit.data: image folders (ADM centre crop), the latent cache, and the training source.

``build_source`` is what the trainer calls; ``extract_latents`` is what ``dit extract-latents``
calls. Heavy modules are imported lazily so ``import dit.data`` stays cheap.
"""

from dit.data.image_folder import IMAGE_EXTENSIONS, ImageFolder, center_crop_arr, load_image, to_rgb
from dit.data.latent_cache import LatentCacheDataset, extract_latents, is_latent_cache, read_header
from dit.data.source import TrainingSource, build_source

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "LatentCacheDataset",
    "TrainingSource",
    "build_source",
    "center_crop_arr",
    "extract_latents",
    "is_latent_cache",
    "load_image",
    "read_header",
    "to_rgb",
]
