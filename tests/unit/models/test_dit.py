"""dit.models: embeddings against diffusers/closed forms, the whole model against a functional
re-implementation of the official equations, shapes for every size and block design,
initialisation, label dropout, guidance, gradients, determinism and state-dict round trips."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dit.config import ModelConfig
from dit.errors import UserError
from dit.models import BLOCK_DESIGNS, DiT, DiT_models, build_model, model_names
from dit.models.embeddings import LabelEmbedder, sincos_pos_embed_2d, timestep_embedding

TINY = dict(patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2, num_classes=10)


def tiny(**kw) -> DiT:
    return DiT(**{"input_size": 8, **TINY, **kw})


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random trainable weights, so zero-initialised gates and the final layer don't hide anything."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def inputs(n=4, hw=(8, 8), c=4, num_classes=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, *hw, generator=g)  # (N, C, H, W)
    t = torch.randint(0, 1000, (n,), generator=g)  # (N,)
    y = torch.randint(0, max(num_classes, 1), (n,), generator=g)  # (N,)
    return x, t, y


# ----------------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("t", [torch.tensor([0, 1, 17, 999]), torch.tensor([0.0, 0.5, 250.25, 999.0])])
def test_timestep_embedding_matches_diffusers_with_official_constants(t):
    from diffusers.models.embeddings import get_timestep_embedding

    # Official DiT: exponent / half (diffusers' shift=0), cos half first (flip_sin_to_cos=True).
    ref = get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(t, 256), ref, atol=1e-5, rtol=1e-5)


def test_pos_embed_matches_diffusers_square():
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    ref = get_2d_sincos_pos_embed(64, 6, base_size=6)  # base_size = grid: no rescaling (as official)
    torch.testing.assert_close(sincos_pos_embed_2d(64, (6, 6)).float(), ref.float(), atol=1e-5, rtol=1e-5)


def test_pos_embed_rectangular_closed_form():
    dim, gh, gw = 16, 3, 5
    ours = sincos_pos_embed_2d(dim, (gh, gw)).numpy()  # (T, D)
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    for i in range(gh):
        for j in range(gw):
            col, row = j * omega, i * omega
            expect = np.concatenate([np.sin(col), np.cos(col), np.sin(row), np.cos(row)])
            np.testing.assert_allclose(ours[i * gw + j], expect, atol=1e-12)


# ----------------------------------------------------------------------------- a second path
def reference_forward(m: DiT, x, t, y):
    """The official adaLN-Zero DiT equations written out on the state dict (manual softmax attention)."""
    sd = m.state_dict()
    n, p, heads = x.shape[0], m.patch_size, m.num_heads
    lin = lambda h, k: h @ sd[k + ".weight"].T + sd[k + ".bias"]  # noqa: E731
    ln = lambda h: F.layer_norm(h, h.shape[-1:], eps=1e-6)  # noqa: E731
    tok = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=p)  # (N, D, gh, gw)
    gh, gw = tok.shape[2:]
    h = tok.flatten(2).transpose(1, 2) + sd["pos_embed"]  # (N, T, D)
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    args = t.float()[:, None] * freqs
    temb = lin(F.silu(lin(torch.cat([torch.cos(args), torch.sin(args)], -1), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]  # (N, D)
    d = h.shape[-1]
    for i in range(len(m.blocks)):
        b = f"blocks.{i}."
        sm, cm, gm, s2, c2, g2 = lin(F.silu(c), b + "adaLN_modulation.1").chunk(6, 1)
        a = ln(h) * (1 + cm[:, None]) + sm[:, None]
        q, k, v = lin(a, b + "attn.qkv").reshape(n, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), -1)
        h = h + gm[:, None] * lin((w @ v).transpose(1, 2).reshape(n, -1, d), b + "attn.proj")
        a = ln(h) * (1 + c2[:, None]) + s2[:, None]
        h = h + g2[:, None] * lin(F.gelu(lin(a, b + "mlp.fc1"), approximate="tanh"), b + "mlp.fc2")
    sf, cf = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = lin(ln(h) * (1 + cf[:, None]) + sf[:, None], "final_layer.linear")  # (N, T, p*p*C)
    co = m.out_channels
    out = out.reshape(n, gh, gw, p, p, co).permute(0, 5, 1, 3, 2, 4)  # (N, C, gh, p, gw, p)
    return out.reshape(n, co, gh * p, gw * p)


@pytest.mark.parametrize("hw", [(8, 8), (8, 12)])
def test_model_matches_reference_equations(hw):
    m = randomise(tiny(input_size=hw)).eval()
    x, t, y = inputs(hw=hw)
    with torch.no_grad():
        torch.testing.assert_close(m(x, t, y), reference_forward(m, x, t, y), atol=1e-4, rtol=1e-4)


def test_unpatchify_inverts_row_major_patchify():
    m = tiny(input_size=(4, 6), learn_sigma=False)
    img = torch.randn(2, 4, 4, 6)  # (N, C, H, W)
    p = 2
    patches = img.reshape(2, 4, 2, p, 3, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, p * p * 4)  # (N, T, p*p*C)
    torch.testing.assert_close(m.unpatchify(patches), img, atol=0, rtol=0)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", model_names())
def test_every_official_config_output_shape(name):
    with torch.device("meta"):
        m = DiT_models[name](input_size=32, num_classes=1000)
        x, t, y = torch.empty(2, 4, 32, 32), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
        assert m(x, t, y).shape == (2, 8, 32, 32)
    assert m.config.name == name and len(m.blocks) == m.config.depth


@pytest.mark.parametrize("block", BLOCK_DESIGNS)
@pytest.mark.parametrize("hw", [(8, 8), (8, 12)])
@pytest.mark.parametrize("num_classes,learn_sigma", [(10, True), (0, False)])
def test_block_design_shapes(block, hw, num_classes, learn_sigma):
    m = randomise(tiny(input_size=hw, block=block, num_classes=num_classes, learn_sigma=learn_sigma))
    x, t, y = inputs(n=3, hw=hw, num_classes=num_classes)
    out = m(x, t, y if num_classes else None)
    assert out.shape == (3, 8 if learn_sigma else 4, *hw)
    assert torch.isfinite(out).all()
    assert (m.y_embedder is None) == (num_classes == 0)
    assert m.pos_embed.shape == (1, (hw[0] // 2) * (hw[1] // 2), 16)


@pytest.mark.parametrize("block", BLOCK_DESIGNS)
def test_labels_and_timesteps_condition_every_design(block):
    m = randomise(tiny(block=block)).eval()
    x, t, y = inputs()
    with torch.no_grad():
        base = m(x, t, y)
        assert not torch.allclose(base, m(x, t, (y + 1) % 10))
        assert not torch.allclose(base, m(x, t + 1, y))


def test_unconditional_ignores_y_and_float_scalar_t():
    m = randomise(tiny(num_classes=0)).eval()
    x, _, _ = inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(x, 3.0), m(x, torch.full((4,), 3), torch.arange(4)))


def test_user_errors():
    with pytest.raises(UserError, match="patch size"):
        tiny(input_size=9)
    with pytest.raises(UserError, match="block design"):
        tiny(block="film")
    with pytest.raises(UserError, match="^hidden size 30 is not divisible by 4 heads$"):  # ModelConfig.validate's
        tiny(hidden_size=30, num_heads=4)
    m = tiny()
    with pytest.raises(UserError, match="expects input"):
        m(torch.randn(2, 4, 8, 10), torch.zeros(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(UserError, match="even batch"):
        m.forward_with_cfg(torch.randn(3, 4, 8, 8), torch.zeros(3), torch.zeros(3, dtype=torch.long), 1.5)
    no_null = tiny(class_dropout_prob=0.0)
    assert no_null.y_embedder.embedding_table.num_embeddings == 10
    with pytest.raises(UserError, match="null class"):
        no_null(
            torch.randn(2, 4, 8, 8),
            torch.zeros(2),
            torch.zeros(2, dtype=torch.long),
            drop_mask=torch.tensor([True, False]),
        )


# ----------------------------------------------------------------------------- initialisation
def test_adaln_zero_blocks_are_identity_and_output_zero_at_init():
    torch.manual_seed(0)
    m = tiny(depth=3).eval()
    x, t, y = inputs()
    h = torch.randn(4, 16, 16)  # (N, T, D)
    c = torch.randn(4, 16)  # (N, D)
    for blk in m.blocks:
        torch.testing.assert_close(blk(h, c), h, atol=0, rtol=0)
    with torch.no_grad():
        assert torch.count_nonzero(m(x, t, y)) == 0
    # Faithful init statistics: timestep MLP and label table N(0, 0.02), zero biases.
    assert abs(m.t_embedder.mlp[0].weight.std().item() - 0.02) < 0.004
    assert torch.count_nonzero(m.blocks[0].attn.qkv.bias) == 0
    bound = math.sqrt(6 / (16 + 48))  # xavier-uniform bound of qkv (16 → 48)
    assert m.blocks[0].attn.qkv.weight.abs().max() <= bound


def test_adaln_design_is_not_zero_initialised():
    torch.manual_seed(0)
    m = tiny(block="adaln")
    assert torch.count_nonzero(m.blocks[0].adaLN_modulation[1].weight) > 0


# ----------------------------------------------------------------------------- label dropout
def test_label_dropout_rate_and_null_class():
    torch.manual_seed(0)
    n, p = 40000, 0.1
    emb = LabelEmbedder(num_classes=7, hidden_size=4, dropout_prob=p)
    labels = torch.randint(0, 7, (n,))
    dropped = emb.token_drop(labels)
    rate = (dropped == 7).float().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma of a binomial proportion
    kept = dropped != 7
    assert torch.equal(dropped[kept], labels[kept])


def test_dropout_only_in_train_mode_unless_mask_given():
    m = randomise(tiny(class_dropout_prob=0.5))
    x, t, y = inputs()
    null = torch.full_like(y, 10)
    mask = torch.tensor([True, False, True, False])
    with torch.no_grad():
        m.eval()
        keep_all = torch.zeros(len(y), dtype=torch.bool)
        cond, uncond = m(x, t, y, drop_mask=keep_all), m(x, t, null)  # labels kept explicitly; null class
        assert not torch.allclose(cond, uncond)  # the labels matter, so a dropped one would show
        for _ in range(5):  # p = 0.5: a train-mode draw would drop some of 4 labels in 5 tries (1 - 2^-20)
            torch.testing.assert_close(m(x, t, y), cond, rtol=0, atol=0)  # eval: never dropped
        torch.testing.assert_close(m(x, t, None), uncond)  # y=None means the null class
        forced = m(x, t, y, drop_mask=mask)
        torch.testing.assert_close(forced[mask], uncond[mask])
        torch.testing.assert_close(forced[~mask], cond[~mask])
        m.train()  # a caller-chosen mask overrides the random coins in training too
        torch.testing.assert_close(m(x, t, y, drop_mask=mask), forced)
        torch.testing.assert_close(m(x, t, y, drop_mask=torch.zeros(4, dtype=torch.bool)), cond)


# ----------------------------------------------------------------------------- guidance
@pytest.mark.parametrize("guidance_channels", ["all", "official"])
@pytest.mark.parametrize("learn_sigma", [True, False])
def test_forward_with_cfg_equals_guided_two_forwards(guidance_channels, learn_sigma):
    m = randomise(tiny(learn_sigma=learn_sigma)).double().eval()  # float64: batch-size rounding out of the way
    x, t, y = inputs(n=3)
    x, s = x.double(), 4.0
    x2, t2 = torch.cat([x, x]), torch.cat([t, t])
    y2 = torch.cat([y, torch.full_like(y, 10)])
    with torch.no_grad():
        out = m.forward_with_cfg(x2, t2, y2, s, guidance_channels=guidance_channels)
        cond, uncond = m(x, t, y), m(x, t, torch.full_like(y, 10))
    g = 4 if guidance_channels == "all" else 3
    guided = uncond[:, :g] + s * (cond[:, :g] - uncond[:, :g])
    for half, plain in ((out[:3], cond), (out[3:], uncond)):
        torch.testing.assert_close(half[:, :g], guided, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(half[:, g:], plain[:, g:], atol=1e-10, rtol=1e-10)  # passed through
    assert out.shape == (6, m.out_channels, 8, 8)


# ----------------------------------------------------------------------------- gradients, determinism, state dict
@pytest.mark.parametrize("block", BLOCK_DESIGNS)
def test_one_backward_reaches_every_trainable_parameter(block):
    m = randomise(tiny(block=block)).train()
    x, t, y = inputs()
    m(x, t, y, drop_mask=torch.tensor([True, False, False, False])).square().mean().backward()
    assert m.pos_embed.grad is None and not m.pos_embed.requires_grad
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_deterministic_under_seed():
    def run():
        torch.manual_seed(123)
        m = tiny(block="cross-attn")
        torch.nn.init.normal_(m.final_layer.linear.weight)  # non-trivial output
        x, t, y = inputs()
        return m.state_dict(), m.train()(x, t, y)

    (sd1, out1), (sd2, out2) = run(), run()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    torch.testing.assert_close(out1, out2, atol=0, rtol=0)


@pytest.mark.parametrize("block", BLOCK_DESIGNS)
def test_state_dict_strict_round_trip(block):
    a = randomise(tiny(block=block), seed=1).eval()
    torch.manual_seed(7)
    b = tiny(block=block).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x, t, y = inputs()
    with torch.no_grad():
        torch.testing.assert_close(b(x, t, y), a(x, t, y), atol=0, rtol=0)


# ----------------------------------------------------------------------------- registry and config
def test_registry_and_build_model_from_config():
    assert len(DiT_models) == 12 and list(DiT_models) == model_names()
    assert model_names()[0] == "DiT-XL/2" and model_names()[-1] == "DiT-S/8"
    m = tiny(input_size=(8, 12), block="in-context")
    assert (m.in_channels, m.out_channels, m.input_size, m.num_classes, m.learn_sigma) == (4, 8, (8, 12), 10, True)
    again = build_model(ModelConfig.from_dict(m.config.to_dict()))
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in m.state_dict().items()}
    with torch.device("meta"):
        named = build_model(ModelConfig(name="DiT-S/4", input_size=16, num_classes=5))
    assert (named.patch_size, len(named.blocks), named.config.hidden_size) == (4, 12, 384)
    assert build_model(named.config).config == named.config
    with pytest.raises(UserError, match="fixes"):
        build_model(ModelConfig(name="DiT-S/4", depth=3))
    with pytest.raises(UserError, match="custom model"):
        build_model(ModelConfig(name=None))
    with pytest.raises(UserError, match="unknown model"):
        build_model(ModelConfig(name="DiT-M/2"))
