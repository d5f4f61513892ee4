"""`dit train`: parse flags → TrainConfig/ModelConfig/DiffusionConfig → dit.train.trainer.train."""

from __future__ import annotations

import argparse

from dit.cli.argtypes import positive_float, positive_int
from dit.config import EMA_TYPES, TrainConfig, default_num_workers

_T = TrainConfig()  # the defaults of the flags that map one-to-one to its fields


def _ratio_or_none(text: str):
    """A positive float, or 'none' (no half-life ramp-up)."""
    return None if text.lower() == "none" else positive_float(text)

HELP = "train a DiT (one process, or one rank per GPU under torchrun)"
DESCRIPTION = (
    "Train a DiT with the paper's recipe (AdamW lr 1e-4, no weight decay, EMA 0.9999) on an image "
    "folder (one sub-folder per class) or a latent cache from `dit extract-latents`. The results "
    "folder holds the config, logs (metrics.csv; TensorBoard with --tensorboard), and checkpoints/<step>.pt with EMA weights "
    "beside them as .ema.safetensors. Launch on several GPUs with: torchrun --nproc_per_node 8 -m "
    "dit.cli.main train ... (multi-node: add --nnodes N --node_rank R --rdzv_endpoint HOST:PORT)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data-path", required=True, help="image folder (one sub-folder per class) or latent cache")
    d.add_argument("--image-size", type=positive_int, default=256, help="image side in pixels (centre crop)")
    d.add_argument("--vae", default="ema", help="latent codec: ema, mse (SD VAEs), none (pixel space) or a local AutoencoderKL folder")
    d.add_argument("--num-classes", type=positive_int, default=None, help="number of classes (checked against the data; default: from the data)")
    d.add_argument("--unconditional", action="store_true", help="ignore labels: train an unconditional model")
    d.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips (digits, text)")
    d.add_argument("--on-bad-image", choices=["skip", "fail"], default="skip", help="unreadable images: skip and list them, or stop")
    d.add_argument("--num-workers", type=int, default=None,
                   help="data-loading worker processes per rank (default: min(4, CPUs per rank), here "
                   f"{default_num_workers()})")

    m = p.add_argument_group("model and diffusion")
    m.add_argument("--model", default=None, help="official size such as DiT-XL/2 or DiT-S/8, ignored with --depth etc. "
                   "(default: DiT-XL/2; with --init-from, the pretrained model's size)")
    m.add_argument("--init-from", default=None, metavar="CKPT_OR_HUB_ID",
                   help="fine-tune: start model and EMA from these weights (a checkpoint, .safetensors, official .pt, "
                   "diffusers folder or hub id); another class count or image size re-makes the class table and "
                   "position embeddings (listed in the log), everything else must match")
    m.add_argument("--block", default="adaln-zero", choices=["adaln-zero", "adaln", "cross-attn", "in-context"], help="block design (paper Fig. 5)")
    m.add_argument("--depth", type=positive_int, default=None, help="custom size: number of blocks (with --hidden-size, --num-heads, --patch-size)")
    m.add_argument("--hidden-size", type=positive_int, default=None, help="custom size: token width D")
    m.add_argument("--num-heads", type=positive_int, default=None, help="custom size: attention heads")
    m.add_argument("--patch-size", type=positive_int, default=None, help="custom size: patch side p")
    m.add_argument("--learn-sigma", action=argparse.BooleanOptionalAction, default=True, help="learn the variance (L_simple + L_vlb) as in the paper")
    m.add_argument("--class-dropout-prob", type=float, default=0.1, help="probability a label is dropped to the null class")

    r = p.add_argument_group("run, budget and checkpoints")
    r.add_argument("--global-batch-size", type=positive_int, default=256, help="examples per step over all processes (divisible by their number)")
    r.add_argument("--results-dir", required=True, help="run folder (config, logs, checkpoints/)")
    r.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps")
    r.add_argument("--epochs", type=positive_int, default=None, help="stop after this many epochs")
    r.add_argument("--max-minutes", type=positive_float, default=None, help="stop cleanly (with a checkpoint) after this many minutes")
    r.add_argument("--ckpt-every", type=positive_int, default=50_000, help="checkpoint every K steps (and always at the end)")
    r.add_argument("--keep-last", type=int, default=5, help="keep the newest K checkpoints (0 keeps all)")
    r.add_argument("--log-every", type=positive_int, default=100, help="log loss, mse, vb and speed every K steps")
    r.add_argument("--tensorboard", action="store_true",
                   help='also write TensorBoard events to RUN/tb (needs pip install "dit[tensorboard]"; metrics.csv is always written)')
    r.add_argument("--seed", type=int, default=0, help="seed of every random choice (data order, noise, t, dropout, flips)")
    r.add_argument("--resume", default=None, help="'auto' (latest checkpoint in the run folder, if any) or a checkpoint path")
    r.add_argument("--sample-every", type=int, default=0, help="write an EMA sample grid every K steps (0 = never)")
    r.add_argument("--eval-every", type=int, default=0, help="evaluate the EMA model every K steps (0 = never)")
    # In-training sampling/evaluation settings (dit.config.TrainSamplingConfig, used by dit.evaluation.hooks)
    r.add_argument("--sample-steps", type=positive_int, default=250, help="DDPM steps of the grid and eval samples")
    r.add_argument("--sample-cfg-scale", type=float, default=4.0, help="guidance scale of the sample grids")
    r.add_argument("--eval-samples", type=positive_int, default=1000, help="class-balanced samples per evaluation")
    r.add_argument("--eval-ref", default=None, help="reference images (.npz or folder; default: the training images)")
    r.add_argument("--eval-features", default="inception", help="inception (FID weights file needed) or classifier:PATH")
    r.add_argument("--eval-cfg-scale", type=float, default=1.0, help="guidance scale of the eval samples (1 = none)")
    r.add_argument("--inception", default=None, help="FID Inception weights file for --eval-features inception (default: cache folder)")

    o = p.add_argument_group("optimisation and numerics")
    o.add_argument("--lr", type=positive_float, default=1e-4, help="AdamW learning rate")
    o.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up steps")
    o.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant", help="lr after warm-up (cosine needs --max-steps)")
    o.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay per step")
    o.add_argument("--ema-warmup", action="store_true", help="use decay min(d, (1+n)/(10+n)) so short runs get a useful EMA")
    o.add_argument("--ema-type", choices=EMA_TYPES, default=_T.ema_type,
                   help="constant: --ema-decay every step (paper); halflife: EDM half-life growing with images seen; "
                   "power: EDM2 power-function EMA of relative width --ema-std (the last two suit short runs)")
    o.add_argument("--ema-halflife-kimg", type=positive_float, default=_T.ema_halflife_kimg,
                   help="halflife EMA: longest half-life in thousands of images (EDM: 500)")
    o.add_argument("--ema-rampup-ratio", type=_ratio_or_none, default=_T.ema_rampup_ratio,
                   help="halflife EMA: half-life at most this fraction of the images seen so far ('none': no ramp-up)")
    o.add_argument("--ema-std", type=positive_float, default=_T.ema_std,
                   help="power EMA: relative standard deviation σ_rel of the average over the run (EDM2: 0.05-0.15)")
    o.add_argument("--adam-beta2", type=float, default=_T.betas[1], help="AdamW β2 (paper 0.999; lower, e.g. 0.99 or 0.95, adapts faster in short runs)")
    o.add_argument("--grad-clip", type=positive_float, default=None, help="clip the global gradient norm to this value")
    o.add_argument("--max-bad-steps", type=positive_int, default=20, help="stop after this many non-finite steps in a row")
    o.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast precision (fp16 adds a grad scaler)")
    o.add_argument("--grad-checkpointing", action="store_true", help="recompute block activations in backward to save memory")
    o.add_argument("--compile", action="store_true", help="torch.compile each block")
    o.add_argument("--fsdp", action="store_true", help="shard the model with FSDP2 (fully_shard) instead of DDP")
    o.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")


def run(args: argparse.Namespace) -> int:
    from dit.config import DiffusionConfig, ModelConfig, TrainConfig
    from dit.errors import UserError
    from dit.train.trainer import train

    custom = [args.depth, args.hidden_size, args.num_heads, args.patch_size]
    if any(v is not None for v in custom) and not all(v is not None for v in custom):
        raise UserError("a custom model size needs all of --depth, --hidden-size, --num-heads and --patch-size")
    sizes = dict(depth=args.depth, hidden_size=args.hidden_size, num_heads=args.num_heads, patch_size=args.patch_size)
    name = args.model or (None if args.init_from else "DiT-XL/2")  # None + no sizes: the pretrained model's
    model_cfg = ModelConfig(
        name=None if custom[0] is not None else name,
        block=args.block,
        learn_sigma=args.learn_sigma,
        class_dropout_prob=args.class_dropout_prob,
        **(sizes if custom[0] is not None else {}),
    )
    diffusion_cfg = DiffusionConfig(learn_sigma=args.learn_sigma)
    cfg = TrainConfig(
        data_path=args.data_path, image_size=args.image_size, vae=args.vae, num_classes=args.num_classes,
        unconditional=args.unconditional, flip=args.flip, on_bad_image=args.on_bad_image,
        num_workers=default_num_workers() if args.num_workers is None else args.num_workers, results_dir=args.results_dir, global_batch_size=args.global_batch_size,
        max_steps=args.max_steps, epochs=args.epochs, max_minutes=args.max_minutes, ckpt_every=args.ckpt_every,
        keep_last=args.keep_last, log_every=args.log_every, tensorboard=args.tensorboard, seed=args.seed, resume=args.resume,
        init_from=args.init_from, lr=args.lr,
        warmup_steps=args.warmup_steps, lr_schedule=args.lr_schedule, grad_clip=args.grad_clip,
        ema_decay=args.ema_decay, ema_warmup=args.ema_warmup, ema_type=args.ema_type,
        ema_halflife_kimg=args.ema_halflife_kimg, ema_rampup_ratio=args.ema_rampup_ratio, ema_std=args.ema_std,
        betas=(_T.betas[0], args.adam_beta2), precision=args.precision,
        grad_checkpointing=args.grad_checkpointing, compile=args.compile, fsdp=args.fsdp, device=args.device,
        max_bad_steps=args.max_bad_steps, sample_every=args.sample_every, eval_every=args.eval_every,
    )
    from dit.config import TrainSamplingConfig
    from dit.evaluation.hooks import training_callbacks

    sampling = TrainSamplingConfig(
        sample_steps=args.sample_steps, sample_cfg_scale=args.sample_cfg_scale, eval_samples=args.eval_samples,
        eval_ref=args.eval_ref, eval_features=args.eval_features, eval_cfg_scale=args.eval_cfg_scale,
        inception=args.inception,
    )
    result = train(cfg, model_cfg, diffusion_cfg, callbacks=training_callbacks(cfg, sampling))
    if result.is_main:
        print(f"stopped at step {result.step} ({result.stop_reason}); checkpoint: {result.last_checkpoint}")
    return 0
