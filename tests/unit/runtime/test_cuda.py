"""CUDA-only checks (skipped without a GPU; run by benchmarks/gpu_check.sh on the device machine).

Each compares the GPU path with an independent reference: the same model in fp32 on the CPU.
"""

import pytest
import torch

from dit.config import GenerationRequest, ModelConfig
from dit.diffusion import create_diffusion
from dit.models import build_model

pytestmark = pytest.mark.cuda

# Head dim 64: a shape the flash kernel supports. Random weights so no zero-initialised gate hides a layer.
CFG = ModelConfig(
    name=None, input_size=8, in_channels=4, num_classes=10, patch_size=2, hidden_size=128, depth=2, num_heads=2
)


def randomised_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(CFG)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    # eval(): label dropout is DiT's only train/eval difference, and its coins come from each
    # device's own RNG, so in train mode the CPU and GPU models would drop different labels.
    return model.eval()


def batch(n: int = 8, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, 8, generator=g)  # (N, C, H, W)
    t = torch.randint(0, 1000, (n,), generator=g)  # (N,)
    y = torch.randint(0, 10, (n,), generator=g)  # (N,)
    return x, t, y


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def test_bf16_flash_forward_backward_matches_fp32_cpu():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ref_model = randomised_model()
    gpu_model = randomised_model().cuda()
    x, t, y = batch()
    out_ref = ref_model(x, t, y)
    out_ref.square().mean().backward()
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu_model(x.cuda(), t.cuda(), y.cuda())
        out.float().square().mean().backward()
    assert rel_err(out.cpu(), out_ref) < 2e-2  # bf16 has 8 mantissa bits: ~4e-3 per op
    ref_grads = {k: p.grad for k, p in ref_model.named_parameters() if p.grad is not None}
    for k, p in gpu_model.named_parameters():
        if k in ref_grads:
            assert rel_err(p.grad.cpu(), ref_grads[k]) < 5e-2, k


@pytest.fixture
def no_tf32():
    """Full-precision fp32 matmuls/convolutions for one test; the global flags are restored after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_fp32_training_step_matches_cpu(no_tf32):
    """The loss and every gradient of one training step equal the CPU's; the fused AdamW step runs."""
    diffusion = create_diffusion("")
    x, t, y = batch()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    results = []
    for device in ("cpu", "cuda"):
        model = randomised_model().to(device)
        losses = diffusion.training_losses(
            model, x.to(device), t.to(device), model_kwargs={"y": y.to(device)}, noise=noise.to(device)
        )
        loss = losses["loss"].mean()
        loss.backward()
        grads = {k: p.grad.detach().cpu().clone() for k, p in model.named_parameters() if p.grad is not None}
        results.append((float(loss), grads, model))
    (loss_cpu, g_cpu, _), (loss_gpu, g_gpu, gpu_model) = results
    assert abs(loss_gpu - loss_cpu) <= 1e-4 * max(1.0, abs(loss_cpu))
    assert set(g_gpu) == set(g_cpu)
    for k in g_cpu:
        assert rel_err(g_gpu[k], g_cpu[k]) < 1e-3, k
    before = {k: p.detach().clone() for k, p in gpu_model.named_parameters()}
    opt = torch.optim.AdamW(gpu_model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
    opt.step()
    changed = [k for k, p in gpu_model.named_parameters() if p.requires_grad and not torch.equal(p, before[k])]
    assert changed and all(torch.isfinite(p).all() for p in gpu_model.parameters())


def test_guided_ddim_sampling_matches_cpu(no_tf32):
    from dit.sampling import ImageSampler
    from dit.vae import load_codec

    cfg = GenerationRequest(sampler="ddim", num_sampling_steps=10, cfg_scale=2.0, seed=0, precision="fp32")
    outs = []
    for device in ("cpu", "cuda"):
        sampler = ImageSampler(randomised_model(), create_diffusion(""), load_codec("none"), cfg, device)
        outs.append(sampler.latents([0, 1, 2, 3], [0, 1, 2, 3]).cpu())
    assert torch.isfinite(outs[1]).all()
    assert rel_err(outs[1], outs[0]) < 1e-3
