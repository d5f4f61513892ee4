"""Checkpoint formats, `load_model`, and `dit convert`: round trips are bit-exact, bad files are refused.

References: the official key/shape maps (tests/reference/data, from facebookresearch/DiT),
diffusers' own ``DiTTransformer2DModel`` built from our config (keys and shapes), and the
source tensors themselves (every round trip must give them back bit for bit).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch

from dit.cli.main import main
from dit.config import ModelConfig
from dit.errors import UserError
from dit.weights.formats import detect_format, load_model, read_weights
from dit.weights.shapes import infer_config
from dit.weights.diffusers_keys import (
    config_from_diffusers,
    config_to_diffusers,
    diffusers_to_official,
    official_to_diffusers,
)
from dit.models.embeddings import sincos_pos_embed_2d
from dit.weights.export import convert_checkpoint
from dit.models.registry import build_model, model_names, resolve
from tests.helpers.weights import assert_same_tensors, random_weights, tiny

REF = Path(__file__).resolve().parents[2] / "reference" / "data"

# Named sizes go through every format; custom sizes through the self-describing ones.
S4 = ModelConfig(name="DiT-S/4", input_size=8, num_classes=10)
CUSTOM = {
    "p2-sigma": tiny(),
    "p4-fixed-sigma": tiny(patch_size=4, hidden_size=48, num_heads=3, depth=1, num_classes=7, learn_sigma=False),
    "p8-pixels": tiny(input_size=16, in_channels=3, patch_size=8, hidden_size=64, num_heads=4, depth=1, num_classes=3),
    "XL-width-1000": tiny(input_size=32, hidden_size=1152, num_heads=16, depth=1, num_classes=1000),
}


def _dit_file(tmp_path: Path, cfg: ModelConfig, sd, name="src.pt") -> Path:
    """Our self-describing weights file for ``sd`` (what `dit convert --to dit` writes)."""
    path = tmp_path / name
    torch.save({"version": 1, "format": "dit-weights", "ema": sd, "config": {"model": cfg.to_dict()}}, path)
    return path


def _loaded(path, **kw):
    loaded = load_model(path, **kw)
    return loaded.model.state_dict(), loaded


# ------------------------------------------------------------------ pure mappings
@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_mapping_round_trip_is_bit_exact(name):
    cfg = CUSTOM[name]
    sd = random_weights(cfg, seed=1)
    back = diffusers_to_official(official_to_diffusers(sd), sample_size=cfg.input_size)
    assert_same_tensors(sd, back)


@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_diffusers_keys_and_shapes_match_diffusers_model(name):
    from diffusers import DiTTransformer2DModel

    cfg = CUSTOM[name]
    resolved = ModelConfig(**cfg.to_dict())
    with torch.device("meta"):
        ref = DiTTransformer2DModel(**config_to_diffusers(resolved)).state_dict()
    ours = official_to_diffusers(random_weights(cfg))
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert config_from_diffusers(config_to_diffusers(resolved)) == resolved


@pytest.mark.parametrize(
    "ref_file",
    [
        "official_dit_state_dict_XL2_256.json",
        "official_dit_state_dict_XL2_512.json",
        "official_dit_state_dict_S2_256.json",
    ],
)
def test_official_shape_maps_infer_the_official_config(ref_file):
    """Shapes of the released checkpoints (meta tensors) → the right name, input size and classes."""
    ref = json.loads((REF / ref_file).read_text())
    sd = {k: torch.empty(s, device="meta") for k, s in ref["state_dict"].items()}
    cfg = infer_config(sd)
    assert cfg.name == ref["model"] and cfg.input_size == ref["input_size"]
    assert cfg.num_classes == 1000 and cfg.learn_sigma and cfg.class_dropout_prob == 0.1


@pytest.mark.parametrize("name", model_names())
def test_every_official_size_maps_to_diffusers_shapes_and_back_to_its_config(name):
    """Every registry size, 10 and 1000 classes, 256 px: shapes (meta tensors) → diffusers keys and
    shapes equal diffusers' own model's; the shapes alone give back the config."""
    from diffusers import DiTTransformer2DModel

    for classes in (10, 1000):
        cfg = resolve(ModelConfig(name=name, input_size=32, num_classes=classes))
        with torch.device("meta"):
            net = build_model(cfg)
            ref = DiTTransformer2DModel(**config_to_diffusers(cfg)).state_dict()
        sd = dict(net.state_dict())
        grid = (32 // cfg.patch_size,) * 2
        sd["pos_embed"] = sincos_pos_embed_2d(cfg.hidden_size, grid).float().unsqueeze(0)  # real: it is checked
        mapped = official_to_diffusers(sd)
        assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ref.items()}
        assert resolve(infer_config(sd)) == cfg


@pytest.mark.slow
def test_full_xl2_mapping_round_trip_and_diffusers_shapes():
    """DiT-XL/2, 1000 classes, full size: official → diffusers → official is bit-exact (≈3 GB RAM)."""
    from diffusers import DiTTransformer2DModel

    cfg = ModelConfig(name="DiT-XL/2", input_size=32, num_classes=1000)
    sd = random_weights(cfg, seed=3)
    ref = json.loads((REF / "official_dit_state_dict_XL2_256.json").read_text())["state_dict"]
    assert {k: list(v.shape) for k, v in sd.items()} == ref
    dsd = official_to_diffusers(sd)
    with torch.device("meta"):
        dref = DiTTransformer2DModel(**config_to_diffusers(resolve(cfg))).state_dict()
    assert {k: tuple(v.shape) for k, v in dsd.items()} == {k: tuple(v.shape) for k, v in dref.items()}
    assert_same_tensors(sd, diffusers_to_official(dsd, sample_size=32))


def test_diffusers_blocks_with_different_embedders_are_refused():
    dsd = official_to_diffusers(random_weights(tiny()))
    dsd["transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias"] += 1
    with pytest.raises(UserError, match="embedder"):
        diffusers_to_official(dsd, sample_size=8)


@pytest.mark.parametrize(
    "cfg, match",
    [
        (tiny(num_classes=0), "unconditional"),
        (tiny(block="adaln"), "adaLN-Zero"),
        (tiny(input_size=(8, 16)), "square"),
        (tiny(class_dropout_prob=0.0), "null class"),
    ],
)
def test_models_diffusers_cannot_represent_are_refused(tmp_path, cfg, match):
    with pytest.raises(UserError, match=match):
        config_to_diffusers(resolve(cfg))
    src = _dit_file(tmp_path, cfg, random_weights(cfg))
    with pytest.raises(UserError):
        convert_checkpoint(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ file round trips
def test_official_to_dit_to_diffusers_to_dit_is_bit_exact_s4(tmp_path):
    """S/4, 10 classes: official .pt → ours (.pt, .safetensors) → diffusers → ours → official."""
    sd = random_weights(S4, seed=2)
    torch.save(sd, tmp_path / "official.pt")
    chain = [
        ("official.pt", "ours.pt"),
        ("ours.pt", "ours.safetensors"),
        ("ours.safetensors", "hf"),
        ("hf", "back.pt"),
        ("back.pt", "back_official.pt"),
    ]
    for src, dst in chain:
        to = "official" if dst == "back_official.pt" else None
        convert_checkpoint(tmp_path / src, tmp_path / dst, to=to)
    for name in ("ours.pt", "ours.safetensors", "hf", "back.pt"):
        got, info = _loaded(tmp_path / name)
        assert_same_tensors(sd, got)
        assert info.config.num_classes == 10 and info.null_class == 10 and info.image_size == 64
        assert info.config.name == "DiT-S/4" and info.learn_sigma is True
    assert_same_tensors(sd, torch.load(tmp_path / "back_official.pt", weights_only=True))


@pytest.mark.parametrize("name", sorted(CUSTOM))
def test_custom_sizes_travel_through_every_self_describing_format(tmp_path, name):
    cfg = CUSTOM[name]
    sd = random_weights(cfg, seed=4)
    src = _dit_file(tmp_path, cfg, sd)
    convert_checkpoint(src, tmp_path / "w.safetensors")
    convert_checkpoint(tmp_path / "w.safetensors", tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "back.pt")
    got, info = _loaded(tmp_path / "back.pt")
    assert_same_tensors(sd, got)
    for key in ("num_classes", "learn_sigma", "in_channels", "input_size", "patch_size", "hidden_size", "num_heads"):
        assert getattr(info.config, key) == getattr(cfg, key), key


def test_half_precision_weights_are_copied_unchanged(tmp_path):
    sd = {k: v.half() for k, v in random_weights(CUSTOM["p2-sigma"]).items()}
    convert_checkpoint(_dit_file(tmp_path, CUSTOM["p2-sigma"], sd), tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "o.pt", to="official")
    assert_same_tensors(sd, torch.load(tmp_path / "o.pt", weights_only=True))
    net = load_model(tmp_path / "hf").model
    assert net.pos_embed.dtype == torch.float32  # the loaded model runs in fp32


def test_safetensors_sidecar_is_used_without_metadata(tmp_path):
    from safetensors.torch import save_file

    cfg = CUSTOM["p4-fixed-sigma"]
    sd = random_weights(cfg)
    save_file(sd, str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({"model": cfg.to_dict()}))
    got, info = _loaded(tmp_path / "w.safetensors")
    assert_same_tensors(sd, got)
    assert info.config.learn_sigma is False and info.format == "safetensors"


def test_hub_style_diffusers_pipeline_folder_loads(tmp_path):
    """The layout of facebook/DiT-XL-2-256: model_index.json, transformer/ with the legacy class
    name Transformer2DModel, a pickled .bin state dict and no norm_eps; id2label gives class names."""
    cfg = CUSTOM["p2-sigma"]
    sd = random_weights(cfg, seed=9)
    (tmp_path / "hub" / "transformer").mkdir(parents=True)
    dcfg = {k: v for k, v in config_to_diffusers(ModelConfig(**cfg.to_dict())).items() if k != "norm_eps"}
    (tmp_path / "hub" / "transformer" / "config.json").write_text(
        json.dumps({"_class_name": "Transformer2DModel", **dcfg})
    )
    torch.save(official_to_diffusers(sd), tmp_path / "hub" / "transformer" / "diffusion_pytorch_model.bin")
    labels = {str(i): f"name {i}" for i in range(5)}
    (tmp_path / "hub" / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline", "id2label": labels}))
    got, info = _loaded(tmp_path / "hub")
    assert_same_tensors(sd, got)
    assert info.format == "diffusers" and info.class_names[3] == "name 3"
    convert_checkpoint(tmp_path / "hub", tmp_path / "w.safetensors")
    assert _loaded(tmp_path / "w.safetensors")[1].class_names[4] == "name 4"


def test_class_names_must_match_the_class_count(tmp_path):
    from tests.helpers.weights import make_tiny_vae

    src = _dit_file(tmp_path, CUSTOM["p2-sigma"], random_weights(CUSTOM["p2-sigma"]))
    (tmp_path / "names.txt").write_text("a\nb\n")
    vae = make_tiny_vae(tmp_path / "vae")
    assert (
        main(
            ["convert", str(src), str(tmp_path / "hf"), "--vae", str(vae), "--class-names", str(tmp_path / "names.txt")]
        )
        == 2
    )
    assert not (tmp_path / "hf").exists()


# ------------------------------------------------------------------ which weights
def _differs(sd, delta):
    return {k: v + delta for k, v in sd.items()}


def test_official_train_checkpoint_picks_ema_by_default(tmp_path):
    model_sd = random_weights(S4, seed=5)
    ema_sd = {k: v.clone() for k, v in model_sd.items()}
    ema_sd["final_layer.linear.bias"] += 1.0
    args = argparse.Namespace(model="DiT-S/4", image_size=64, num_classes=10, vae="ema")
    torch.save(
        {"model": {f"module.{k}": v for k, v in model_sd.items()}, "ema": ema_sd, "opt": {}, "args": args},
        tmp_path / "0001000.pt",
    )
    got, info = _loaded(tmp_path / "0001000.pt")
    assert_same_tensors(ema_sd, got)
    assert info.format == "official-train" and info.weights == "ema" and info.meta["args"]["vae"] == "ema"
    got, info = _loaded(tmp_path / "0001000.pt", weights="model")  # DDP's module. prefix is dropped
    assert_same_tensors(model_sd, got)
    assert info.weights == "model"


def test_dit_training_checkpoint_layout(tmp_path):
    """The dict `dit train` writes (model, ema, opt, step, config{model, diffusion, train, data})."""
    cfg = CUSTOM["p2-sigma"]
    model_sd, ema_sd = random_weights(cfg, seed=6), random_weights(cfg, seed=7)
    data = {"image_size": 16, "class_names": [f"c{i}" for i in range(5)], "vae": {"id": "none"}}
    state = {
        "version": 1,
        "model": model_sd,
        "ema": ema_sd,
        "opt": {},
        "step": 42,
        "config": {"model": cfg.to_dict(), "diffusion": {"learn_sigma": True}, "train": {}, "data": data},
    }
    torch.save(state, tmp_path / "0000042.pt")
    got, info = _loaded(tmp_path / "0000042.pt")
    assert_same_tensors(ema_sd, got)
    assert (info.format, info.weights, info.step, info.image_size) == ("dit-train", "ema", 42, 16)
    assert info.class_names[4] == "c4" and info.vae == {"id": "none"}
    convert_checkpoint(tmp_path / "0000042.pt", tmp_path / "m.safetensors", weights="model")
    got, info = _loaded(tmp_path / "m.safetensors")
    assert_same_tensors(model_sd, got)
    assert info.weights == "model" and info.class_names[0] == "c0"


@pytest.mark.slow
def test_real_dit_train_checkpoint_and_ema_export_load(tmp_path):
    """A checkpoint written by `dit train` itself (tiny pixel model) loads, EMA first, and converts."""
    from tests.helpers.train import make_image_folder, train_args

    data = make_image_folder(tmp_path / "data", classes=2, per_class=4, size=8)
    assert main(train_args(data, tmp_path / "run", "--max-steps", "2")) == 0
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1]
    state = torch.load(ckpt, weights_only=True)
    got, info = _loaded(ckpt)
    assert_same_tensors(state["ema"], got)
    assert info.format == "dit-train" and info.num_classes == 2 and info.image_size == 8
    ema_export = ckpt.with_name(ckpt.name[:-3] + ".ema.safetensors")
    got, info = _loaded(ema_export)
    assert_same_tensors(state["ema"], got)
    assert info.weights == "ema"
    assert main(["convert", str(ckpt), str(tmp_path / "hf")]) == 0
    assert_same_tensors(state["ema"], _loaded(tmp_path / "hf")[0])


# ------------------------------------------------------------------ mismatches and overrides
def test_mismatch_names_keys_and_suggests_flags(tmp_path):
    torch.save(random_weights(S4), tmp_path / "s4.pt")
    with pytest.raises(UserError) as e:
        load_model(tmp_path / "s4.pt", model="DiT-B/4")
    msg = str(e.value)
    assert "mis-shaped" in msg and "--model DiT-S/4 --image-size 64 --num-classes 10" in msg
    with pytest.raises(UserError, match=r"pos_embed \(1, 4, 384\) vs \(1, 16, 384\)"):
        load_model(tmp_path / "s4.pt", image_size=128)
    sd = random_weights(S4)
    del sd["final_layer.linear.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "odd.pt")
    with pytest.raises(UserError, match=r"missing final_layer.linear.bias; unexpected extra.weight"):
        load_model(tmp_path / "odd.pt", model="DiT-S/4")


def test_explicit_num_classes_without_null_row(tmp_path):
    cfg = ModelConfig(name="DiT-S/4", input_size=8, num_classes=10, class_dropout_prob=0.0)
    sd = random_weights(cfg)
    torch.save(sd, tmp_path / "nonull.pt")
    assert infer_config(sd).num_classes == 9  # the shapes alone read a null row
    got, info = _loaded(tmp_path / "nonull.pt", num_classes=10)
    assert_same_tensors(sd, got)
    assert info.null_class is None and info.num_classes == 10


def test_custom_official_size_without_config_asks_for_a_described_file(tmp_path):
    torch.save(random_weights(tiny()), tmp_path / "custom.pt")
    with pytest.raises(UserError, match="no official DiT has depth 2 and width 32"):
        load_model(tmp_path / "custom.pt")


# ------------------------------------------------------------------ refused files
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling would create the marker file


@pytest.mark.parametrize("kind", ["text", "truncated", "evil", "random-bytes", "bad-safetensors", "list"])
def test_unsafe_and_broken_files_are_refused(tmp_path, kind, capsys):
    marker = tmp_path / "PWNED"
    path = tmp_path / ("bad.safetensors" if kind == "bad-safetensors" else "bad.pt")
    if kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "truncated":
        torch.save(random_weights(S4), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "evil":
        torch.save({"model": {"x": torch.zeros(1)}, "args": _Evil(str(marker))}, path)
        assert not marker.exists()
    elif kind == "random-bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "bad-safetensors":
        path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": broken}xx')
    else:
        torch.save([torch.zeros(1)], path)
    with pytest.raises(UserError):
        load_model(path)
    assert not marker.exists()
    assert main(["convert", str(path), str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_format_detection(tmp_path):
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.bin")
    assert detect_format(tmp_path / "x.bin") == "pickle"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert detect_format(tmp_path / "hf") == "diffusers"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="folder without"):
        detect_format(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        read_weights(tmp_path / "nope.pt")


# ------------------------------------------------------------------ the command line
def test_cli_convert_chain_and_refusals(tmp_path, capsys):
    cfg = CUSTOM["p4-fixed-sigma"]
    sd = random_weights(cfg, seed=8)
    src = str(_dit_file(tmp_path, cfg, sd))
    assert main(["convert", src, str(tmp_path / "hf")]) == 0
    out = capsys.readouterr().out
    assert "custom, image 64, 7 classes (null 7), learn_sigma False" in out
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "hf")]) == 2  # same path
    assert main(["convert", src, str(tmp_path / "hf")]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", src, str(tmp_path / "hf"), "--overwrite"]) == 0
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "o.bin"), "--to", "official"]) == 0
    assert_same_tensors(sd, torch.load(tmp_path / "o.bin", weights_only=True))
    assert main(["convert", str(tmp_path / "o.bin"), str(tmp_path / "x.pt"), "--vae", "none"]) == 2
    assert main(["convert", str(tmp_path / "o.bin"), str(tmp_path / "x.weird")]) == 2
    assert main(["convert", str(tmp_path / "o.bin"), str(tmp_path / "x.pt"), "--model", "DiT-Q/3"]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_cli_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["convert", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--to",
        "--model",
        "--image-size",
        "--num-classes",
        "--weights",
        "--vae",
        "--scheduler",
        "--class-names",
        "--overwrite",
    ):
        assert flag in out
