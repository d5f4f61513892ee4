"""`dit train`: parse flags → TrainConfig/ModelConfig/DiffusionConfig → dit.train.trainer.train."""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_float, positive_int
from dit.config import (
    BLOCK_DESIGNS,
    EMA_TYPES,
    LR_SCHEDULES,
    MLP_TYPES,
    NORM_TYPES,
    OBJECTIVES,
    PREDICTION_TYPES,
    ON_BAD_IMAGE,
    TRAIN_PRECISIONS,
    QK_NORM_TYPES,
    RECIPE_NAMES,
    TIMESTEP_SAMPLINGS,
    ModelConfig,
    TrainConfig,
    TrainSamplingConfig,
    default_num_workers,
)

# The defaults of the flags that map one-to-one to their fields (each setting is defined once, in dit.config)
_T, _M, _S = TrainConfig(), ModelConfig(), TrainSamplingConfig()


def _ratio_or_none(text: str):
    """A positive float, or 'none' (no half-life ramp-up)."""
    return None if text.lower() == "none" else positive_float(text)


HELP = "train a DiT (one process, or one rank per GPU under torchrun)"
DESCRIPTION = (
    "Train a DiT with the paper's recipe (AdamW lr 1e-4, no weight decay, EMA 0.9999; or --recipe fast "
    "for short runs: flow matching, logit-normal timesteps, higher lr, growing EMA) on an image "
    "folder (one sub-folder per class) or a latent cache from `dit extract-latents`. The results "
    "folder holds the config, logs (metrics.csv; TensorBoard with --tensorboard), and checkpoints/<step>.pt "
    "with EMA weights "
    "beside them as .ema.safetensors. Launch on several GPUs with: torchrun --nproc_per_node 8 -m "
    "dit.cli.main train ... (multi-node: add --nnodes N --node_rank R --rdzv_endpoint HOST:PORT)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data-path", required=True, help="image folder (one sub-folder per class) or latent cache")
    d.add_argument("--image-size", type=positive_int, default=_T.image_size, help="image side in pixels (centre crop)")
    d.add_argument(
        "--vae",
        default=_T.vae,
        help="latent codec: ema, mse (SD VAEs), none (pixel space) or a local AutoencoderKL folder",
    )
    d.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        help="number of classes (checked against the data; default: from the data)",
    )
    d.add_argument("--unconditional", action="store_true", help="ignore labels: train an unconditional model")
    d.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips (digits, text)")
    d.add_argument(
        "--on-bad-image",
        choices=ON_BAD_IMAGE,
        default=_T.on_bad_image,
        help="unreadable images: skip and list them, or stop",
    )
    d.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help=f"data-loading worker processes per rank (default: min(4, CPUs per rank), here {default_num_workers()})",
    )

    m = p.add_argument_group("model and diffusion")
    m.add_argument(
        "--model",
        default=None,
        help="official size such as DiT-XL/2 or DiT-S/8, ignored with --depth etc. "
        "(default: DiT-XL/2; with --init-from, the pretrained model's size)",
    )
    m.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT_OR_HUB_ID",
        help="fine-tune: start model and EMA from these weights (a checkpoint, .safetensors, official .pt, "
        "diffusers folder or hub id); another class count or image size re-makes the class table and "
        "position embeddings (listed in the log), everything else must match",
    )
    m.add_argument(
        "--block",
        default=_M.block,
        choices=BLOCK_DESIGNS,
        help="block design (paper Fig. 5)",
    )
    m.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        help="custom size: number of blocks (with --hidden-size, --num-heads, --patch-size)",
    )
    m.add_argument("--hidden-size", type=positive_int, default=None, help="custom size: token width D")
    m.add_argument("--num-heads", type=positive_int, default=None, help="custom size: attention heads")
    m.add_argument("--patch-size", type=positive_int, default=None, help="custom size: patch side p")
    m.add_argument(
        "--learn-sigma",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn the variance (L_simple + L_vlb) as in the paper "
        "(default: on for the gaussian objective, off for flow)",
    )
    m.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="gaussian: ε-prediction (+ learned Σ), the paper's; flow: flow matching with velocity prediction "
        "(SiT; sampled with heun/euler/sde) (default: from --recipe)",
    )
    m.add_argument(
        "--timestep-sampling",
        choices=TIMESTEP_SAMPLINGS,
        default=None,
        help="training timesteps: uniform (paper) or logit-normal (SD3) (default: from --recipe)",
    )
    m.add_argument(
        "--logit-normal-mean", type=float, default=None, help="logit-normal timesteps: mean m of logit(t) (fast: 0)"
    )
    m.add_argument(
        "--prediction-type",
        choices=PREDICTION_TYPES,
        default=None,
        help="what the model predicts: gaussian epsilon (paper), xstart or v; flow v or xstart (JiT) "
        "(default: from --recipe)",
    )
    m.add_argument(
        "--min-snr-gamma",
        type=positive_float,
        default=None,
        help="gaussian objective: weight the MSE by min-SNR-γ (Hang et al. 2023 use 5; default: unweighted)",
    )
    m.add_argument(
        "--logit-normal-std",
        type=positive_float,
        default=None,
        help="logit-normal timesteps: std s of logit(t) (fast: 1)",
    )
    m.add_argument(
        "--class-dropout-prob",
        type=float,
        default=_M.class_dropout_prob,
        help="probability a label is dropped to the null class",
    )
    m.add_argument("--norm", choices=NORM_TYPES, default=_M.norm, help="block and final norms: layer (paper) or rms")
    m.add_argument(
        "--qk-norm",
        choices=QK_NORM_TYPES,
        default=_M.qk_norm,
        help="normalise each head's queries and keys (none = paper)",
    )
    m.add_argument(
        "--mlp",
        choices=MLP_TYPES,
        default=_M.mlp,
        help="gelu (paper) or swiglu (2/3 the hidden width: same parameters)",
    )
    m.add_argument(
        "--rope",
        action=argparse.BooleanOptionalAction,
        default=_M.rope,
        help="2-D rotary position embedding on queries/keys",
    )
    m.add_argument(
        "--long-skip",
        action=argparse.BooleanOptionalAction,
        default=_M.long_skip,
        help="U-ViT long skips: block i's output feeds block depth-1-i (concat + linear)",
    )

    r = p.add_argument_group("run, budget and checkpoints")
    r.add_argument(
        "--global-batch-size",
        type=positive_int,
        default=_T.global_batch_size,
        help="examples per step over all processes (divisible by their number)",
    )
    r.add_argument("--results-dir", required=True, help="run folder (config, logs, checkpoints/)")
    r.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps")
    r.add_argument("--epochs", type=positive_int, default=None, help="stop after this many epochs")
    r.add_argument(
        "--max-minutes",
        type=positive_float,
        default=None,
        help="stop cleanly (with a checkpoint) after this many minutes",
    )
    r.add_argument(
        "--ckpt-every",
        type=positive_int,
        default=_T.ckpt_every,
        help="checkpoint every K steps (and always at the end)",
    )
    r.add_argument("--keep-last", type=int, default=_T.keep_last, help="keep the newest K checkpoints (0 keeps all)")
    r.add_argument(
        "--log-every", type=positive_int, default=_T.log_every, help="log loss, mse, vb and speed every K steps"
    )
    r.add_argument(
        "--tensorboard",
        action="store_true",
        help='also write TensorBoard events to RUN/tb (needs pip install "dit[tensorboard]"; '
        "metrics.csv is always written)",
    )
    r.add_argument(
        "--seed",
        "--global-seed",
        type=int,
        default=_T.seed,
        help="seed of every random choice (data order, noise, t, dropout, flips)",
    )
    r.add_argument(
        "--resume", default=None, help="'auto' (latest checkpoint in the run folder, if any) or a checkpoint path"
    )
    r.add_argument(
        "--sample-every", type=int, default=_T.sample_every, help="write an EMA sample grid every K steps (0 = never)"
    )
    r.add_argument(
        "--eval-every", type=int, default=_T.eval_every, help="evaluate the EMA model every K steps (0 = never)"
    )
    # In-training sampling/evaluation settings (dit.config.TrainSamplingConfig, used by dit.evaluation.hooks)
    r.add_argument(
        "--num-sampling-steps",
        "--sample-steps",
        "--sampling-steps",
        dest="sample_steps",
        type=positive_int,
        default=None,
        help="sampler steps of the grid and eval samples (default: DDPM 250 for gaussian, Heun 25 for flow)",
    )
    r.add_argument(
        "--sample-cfg-scale", type=float, default=_S.sample_cfg_scale, help="guidance scale of the sample grids"
    )
    r.add_argument(
        "--eval-samples", type=positive_int, default=_S.eval_samples, help="class-balanced samples per evaluation"
    )
    r.add_argument("--eval-ref", default=None, help="reference images (.npz or folder; default: the training images)")
    r.add_argument(
        "--eval-features", default=_S.eval_features, help="inception (FID weights file needed) or classifier:PATH"
    )
    r.add_argument(
        "--eval-cfg-scale", type=float, default=_S.eval_cfg_scale, help="guidance scale of the eval samples (1 = none)"
    )
    r.add_argument(
        "--inception",
        default=None,
        help="FID Inception weights file for --eval-features inception (default: cache folder)",
    )

    o = p.add_argument_group("recipe, optimisation and numerics")
    o.add_argument(
        "--recipe",
        choices=RECIPE_NAMES,
        default=_T.recipe,
        help="paper: the paper's recipe, bit-exact (ε + learned Σ, uniform t, lr 1e-4, EMA 0.9999); fast: for "
        "short runs (flow matching with x-prediction, logit-normal(0.5,1) t, lr 5e-4 with 100 warm-up steps, "
        "grad clip 1, "
        "AdamW β2 0.99, half-life EMA). Flags given explicitly override the recipe's values",
    )
    o.add_argument("--lr", type=positive_float, default=None, help="AdamW learning rate (paper: 1e-4, fast: 5e-4)")
    o.add_argument("--warmup-steps", type=int, default=None, help="linear lr warm-up steps (paper: 0, fast: 100)")
    o.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=_T.lr_schedule,
        help="lr after warm-up (cosine needs --max-steps)",
    )
    o.add_argument("--ema-decay", type=float, default=_T.ema_decay, help="EMA decay per step")
    o.add_argument(
        "--ema-warmup", action="store_true", help="use decay min(d, (1+n)/(10+n)) so short runs get a useful EMA"
    )
    o.add_argument(
        "--ema-type",
        choices=EMA_TYPES,
        default=None,
        help="(paper: constant, fast: halflife) constant: --ema-decay every step; "
        "halflife: EDM half-life growing with images seen; "
        "power: EDM2 power-function EMA of relative width --ema-std (the last two suit short runs)",
    )
    o.add_argument(
        "--ema-halflife-kimg",
        type=positive_float,
        default=_T.ema_halflife_kimg,
        help="halflife EMA: longest half-life in thousands of images (EDM: 500)",
    )
    o.add_argument(
        "--ema-rampup-ratio",
        type=_ratio_or_none,
        default=_T.ema_rampup_ratio,
        help="halflife EMA: half-life at most this fraction of the images seen so far ('none': no ramp-up)",
    )
    o.add_argument(
        "--ema-std",
        type=positive_float,
        default=_T.ema_std,
        help="power EMA: relative standard deviation σ_rel of the average over the run (EDM2: 0.05-0.15)",
    )
    o.add_argument(
        "--adam-beta2",
        type=float,
        default=None,
        help="AdamW β2 (paper 0.999, fast 0.99; lower adapts faster in short runs)",
    )
    o.add_argument(
        "--grad-clip",
        type=positive_float,
        default=None,
        help="clip the global gradient norm to this value (paper: none, fast: 1.0)",
    )
    o.add_argument(
        "--max-bad-steps",
        type=positive_int,
        default=_T.max_bad_steps,
        help="stop after this many non-finite steps in a row",
    )
    o.add_argument(
        "--precision",
        choices=TRAIN_PRECISIONS,
        default=_T.precision,
        help="autocast precision (fp16 adds a grad scaler); auto: fp32 for --recipe paper (bit-exact), "
        "else the faster one on this machine (CPU: bf16 only with AMX/AVX512-BF16 and a faster probe)",
    )
    o.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=_T.tf32,
        help="TensorFloat-32 matmuls/convolutions on CUDA (the official train.py's --tf32)",
    )
    o.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute block activations in backward to save memory"
    )
    o.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=_T.compile,
        help="torch.compile each block (default auto: on for non-paper recipes on CUDA, off on CPU and for "
        "--recipe paper)",
    )
    o.add_argument("--fsdp", action="store_true", help="shard the model with FSDP2 (fully_shard) instead of DDP")
    o.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


# Flags whose default comes from --recipe: (config section, field); the flag is --field with dashes
# (betas: --adam-beta2).
RECIPE_FLAGS = (
    ("train", "lr"),
    ("train", "warmup_steps"),
    ("train", "grad_clip"),
    ("train", "ema_type"),
    ("train", "adam_beta2"),
    ("diffusion", "objective"),
    ("diffusion", "timestep_sampling"),
    ("diffusion", "logit_normal_mean"),
    ("diffusion", "logit_normal_std"),
    ("diffusion", "prediction_type"),
    ("diffusion", "min_snr_gamma"),
)


def build_configs(args: argparse.Namespace):
    """(TrainConfig, ModelConfig, DiffusionConfig): the dataclass defaults, then --recipe's values, then the
    flags given explicitly. --learn-sigma, unless given, follows the objective (on for gaussian, off for flow)."""
    import dataclasses

    from dit.config import DiffusionConfig, ModelConfig, apply_recipe
    from dit.errors import UserError

    custom = [args.depth, args.hidden_size, args.num_heads, args.patch_size]
    if any(v is not None for v in custom) and not all(v is not None for v in custom):
        raise UserError("a custom model size needs all of --depth, --hidden-size, --num-heads and --patch-size")
    sizes = dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads, patch_size=args.patch_size)
    name = args.model or (None if args.init_from else "DiT-XL/2")  # None + no sizes: the pretrained model's
    model_cfg = ModelConfig(
        name=None if custom[0] is not None else name,
        block=args.block,
        class_dropout_prob=args.class_dropout_prob,
        norm=args.norm,
        qk_norm=args.qk_norm,
        mlp=args.mlp,
        rope=args.rope,
        long_skip=args.long_skip,
        **(sizes if custom[0] is not None else {}),
    )
    cfg = TrainConfig(
        data_path=args.data_path,
        image_size=args.image_size,
        vae=args.vae,
        num_classes=args.num_classes,
        unconditional=args.unconditional,
        flip=args.flip,
        on_bad_image=args.on_bad_image,
        num_workers=default_num_workers() if args.num_workers is None else args.num_workers,
        results_dir=args.results_dir,
        global_batch_size=args.global_batch_size,
        max_steps=args.max_steps,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        ckpt_every=args.ckpt_every,
        keep_last=args.keep_last,
        log_every=args.log_every,
        tensorboard=args.tensorboard,
        seed=args.seed,
        resume=args.resume,
        init_from=args.init_from,
        lr_schedule=args.lr_schedule,
        ema_decay=args.ema_decay,
        ema_warmup=args.ema_warmup,
        ema_halflife_kimg=args.ema_halflife_kimg,
        ema_rampup_ratio=args.ema_rampup_ratio,
        ema_std=args.ema_std,
        precision=args.precision,
        tf32=args.tf32,
        grad_checkpointing=args.grad_checkpointing,
        compile=args.compile,
        fsdp=args.fsdp,
        device=args.device,
        max_bad_steps=args.max_bad_steps,
        sample_every=args.sample_every,
        eval_every=args.eval_every,
    )
    cfg, model_cfg, diffusion_cfg = apply_recipe(args.recipe, cfg, model_cfg, DiffusionConfig())
    given: dict[str, dict] = {"train": {}, "diffusion": {}}
    for section, field in RECIPE_FLAGS:
        if getattr(args, field) is not None:
            given[section][field] = getattr(args, field)
    if "adam_beta2" in given["train"]:
        given["train"]["betas"] = (cfg.betas[0], given["train"].pop("adam_beta2"))
    cfg = dataclasses.replace(cfg, **given["train"])
    diffusion_cfg = dataclasses.replace(diffusion_cfg, **given["diffusion"])
    learn_sigma = args.learn_sigma if args.learn_sigma is not None else diffusion_cfg.objective == "gaussian"
    model_cfg = dataclasses.replace(model_cfg, learn_sigma=learn_sigma)
    diffusion_cfg = dataclasses.replace(diffusion_cfg, learn_sigma=learn_sigma).validate()
    return cfg, model_cfg, diffusion_cfg


def run(args: argparse.Namespace) -> int:
    from dit.train.trainer import train

    cfg, model_cfg, diffusion_cfg = build_configs(args)
    from dit.config import TrainSamplingConfig
    from dit.evaluation.hooks import training_callbacks

    sampling = TrainSamplingConfig(
        sample_steps=args.sample_steps,
        sample_cfg_scale=args.sample_cfg_scale,
        eval_samples=args.eval_samples,
        eval_ref=args.eval_ref,
        eval_features=args.eval_features,
        eval_cfg_scale=args.eval_cfg_scale,
        inception=args.inception,
    )
    result = train(cfg, model_cfg, diffusion_cfg, callbacks=training_callbacks(cfg, sampling))
    if result.is_main:
        print(f"stopped at step {result.step} ({result.stop_reason}); checkpoint: {result.last_checkpoint}")
    return 0
