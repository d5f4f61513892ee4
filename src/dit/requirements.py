"""The oldest torch this package works with, checked before any command runs.

``pyproject.toml`` says ``torch>=2.6`` and this is why (the newest of these sets the floor):

* ``torch.distributed.fsdp.fully_shard`` (``--fsdp``, FSDP2) is public from torch 2.6;
* ``torch.distributed.tensor`` (sharded EMA restore) and ``torch.serialization.safe_globals``
  (loading official ``train.py`` checkpoints, whose ``args`` is an ``argparse.Namespace``,
  without general unpickling) are public from 2.5.

A test keeps :data:`MIN_TORCH` and the pyproject pin equal. Read from the installed package's
metadata, so the check costs no ``import torch``.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Optional

MIN_TORCH = (2, 6)


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as ``2.13.0+cpu`` or ``2.7.0a0+git1234``."""
    m = re.match(r"(\d+)\.(\d+)", text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def torch_too_old(version: Optional[str] = None) -> Optional[str]:
    """A one-line reason when the installed (or given) torch is older than :data:`MIN_TORCH`, else None."""
    if version is None:
        try:
            version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            return None  # a source build without metadata: let the imports speak
    try:
        if parse_version(version) >= MIN_TORCH:
            return None
    except ValueError:
        return None
    floor = ".".join(map(str, MIN_TORCH))
    return (
        f"dit needs torch >= {floor} (FSDP2's public fully_shard; installed: {version}); "
        f'upgrade with pip install "torch>={floor}"'
    )
