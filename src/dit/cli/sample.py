"""`dit sample`: parse flags → SampleConfig + GenerationRequest → dit.sampling.generate_to_file."""

from __future__ import annotations

import argparse

from dit.cli.flags import add_alias, add_fields
from dit.cli.run_config import add_config_flags, check_required, resolve
from dit.config import GenerationRequest, SampleConfig
from dit.config.sample import DRAW, OUTPUT, WEIGHTS

HELP = (
    "draw samples from a checkpoint into a PNG grid, an .npz or a folder of PNGs "
    "(one process, or one rank per GPU under torchrun)"
)
DESCRIPTION = (
    "Draw images from a dit checkpoint (EMA weights by default), its .safetensors export, or an official DiT .pt "
    "(then say which model: --model DiT-XL/2 --image-size 256; a non-official size needs a file that carries its "
    "config, e.g. `dit convert` output). --out FILE.png writes a grid (one row per class when classes are balanced); "
    "--out FILE.npz writes arr_0 (N, H, W, 3) uint8 and arr_1 (N,) labels for `dit eval` and ADM's evaluator; "
    "--out DIR/ writes one PNG per sample (000000.png, or 000000_class207.png with labels), the input of clean-fid "
    "and torch-fidelity. A protocol card FILE.protocol.json (DIR.protocol.json) records everything that fixed "
    "the pixels, and FILE.config.toml the settings (--config FILE.config.toml --out OTHER draws them again). "
    "Sample i depends only on the settings, the seed "
    "and i, so the file is the same for any number of processes: torchrun --nproc_per_node 8 -m dit.cli.main sample "
    "... splits the work; an interrupted run picks up the shards already written in FILE.shards/ when rerun."
)


SECTIONS: dict[str, type] = {"sample": SampleConfig, "request": GenerationRequest}  # config file tables
SETTINGS_HEADER = "dit sample: the resolved settings (defaults < config file < flags); use: dit sample --config FILE"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, SECTIONS)
    for title in (WEIGHTS, DRAW, OUTPUT):  # --help lists the sections in this order
        p.add_argument_group(title)
    for cls in SECTIONS.values():
        add_fields(p, cls)
    add_alias(p, SampleConfig, "out", "--sample-dir", parse=_folder, metavar="DIR", note="DIR/ (a folder)")
    output = next(g for g in p._action_groups if g.title == OUTPUT)
    output.add_argument("--keep-shards", action="store_true", help="keep FILE.shards/ after merging (default: removed)")


def _folder(text: str) -> str:
    return text.rstrip("/") + "/"


def run(args: argparse.Namespace) -> int:
    from dit.config.files import to_toml
    from dit.sampling import generate_to_file

    configs, explicit = resolve(SECTIONS, args)
    if args.print_config:
        print(to_toml(configs, header=SETTINGS_HEADER), end="")
        return 0
    check_required(SECTIONS, explicit)
    out = generate_to_file(configs["sample"], configs["request"], keep_shards=args.keep_shards)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        from dit.runtime.checkpoint import atomic_write

        # beside the protocol card: `dit sample --config OUT.config.toml --out OTHER` draws the same images
        text = to_toml(configs, header=SETTINGS_HEADER).encode("utf-8")
        atomic_write(f"{out}.config.toml", lambda f: f.write(text))
        print(f"wrote {out}, {out}.protocol.json and {out}.config.toml")
    return 0
