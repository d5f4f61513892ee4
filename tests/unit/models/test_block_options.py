"""Block options (RMSNorm, qk-norm, SwiGLU, 2-D RoPE, long skips): off = the paper's DiT, on = the
formulas they name, checked against hand-written equations and RoPE's defining properties."""

import math

import pytest
import torch
import torch.nn.functional as F

from dit.config import BLOCK_OPTIONS, ModelConfig
from dit.errors import UserError
from dit.models import DiT, build_model
from dit.models.blocks import Mlp, SwiGLU, make_norm, swiglu_hidden
from dit.models.rope import apply_rope, rope_tables

from .test_dit import inputs, randomise, reference_forward

TINY = dict(patch_size=2, in_channels=4, hidden_size=32, depth=4, num_heads=2, num_classes=10)
ALL_ON = dict(norm="rms", qk_norm="rms", mlp="swiglu", rope=True, long_skip=True)


def tiny(**kw) -> DiT:
    torch.manual_seed(0)
    return DiT(**{"input_size": 8, **TINY, **kw})


# ----------------------------------------------------------------------------- off = the paper's DiT
def test_options_off_keep_keys_shapes_and_outputs():
    paper, explicit = tiny(), tiny(norm="layer", qk_norm="none", mlp="gelu", rope=False, long_skip=False)
    assert {k: v.shape for k, v in paper.state_dict().items()} == {k: v.shape for k, v in explicit.state_dict().items()}
    randomise(paper).eval(), randomise(explicit).eval()
    x, t, y = inputs()
    with torch.no_grad():
        assert torch.equal(paper(x, t, y), explicit(x, t, y))
        torch.testing.assert_close(paper(x, t, y), reference_forward(paper, x, t, y), atol=1e-4, rtol=1e-4)
    assert paper.config.options() == {} and ModelConfig().options() == {}


# ----------------------------------------------------------------------------- the pieces vs formulas
def test_rmsnorm_and_qk_layernorm_match_hand_formulas():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    rms = make_norm("rms", 16, affine=True).double()
    with torch.no_grad():
        rms.weight.copy_(torch.linspace(0.5, 2.0, 16))
    expect = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * rms.weight
    torch.testing.assert_close(rms(x), expect)
    ln = make_norm("layer", 16, affine=False).double()
    torch.testing.assert_close(
        ln(x), (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    )


def test_swiglu_matches_its_formula_with_about_the_gelu_parameters():
    torch.manual_seed(0)
    dim, hidden = 64, 256
    m = SwiGLU(dim, swiglu_hidden(hidden)).double()
    x = torch.randn(2, 7, dim, dtype=torch.float64)
    h = swiglu_hidden(hidden)
    w1, b1 = m.fc1.weight, m.fc1.bias
    value = x @ w1[:h].T + b1[:h]
    gate = x @ w1[h:].T + b1[h:]
    expect = (value * gate * torch.sigmoid(gate)) @ m.fc2.weight.T + m.fc2.bias
    torch.testing.assert_close(m(x), expect)
    n_swiglu = sum(p.numel() for p in m.parameters())
    n_gelu = sum(p.numel() for p in Mlp(dim, hidden).parameters())
    assert abs(n_swiglu - n_gelu) / n_gelu < 0.01


def test_rope_preserves_norms_and_scores_depend_on_relative_position_only():
    grid, hd = (6, 5), 8
    cos, sin = rope_tables(grid, hd)  # (T, hd/2)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, hd, generator=g, dtype=torch.float64)

    def at(v, r, c):  # v rotated as the token at (row r, column c)
        i = r * grid[1] + c
        return apply_rope(v.view(1, 1, 1, hd), cos[i : i + 1].double(), sin[i : i + 1].double()).view(hd)

    torch.testing.assert_close(at(q, 4, 3).norm(), q.norm())
    base = at(q, 1, 2) @ at(k, 3, 0)
    for dr, dc in ((1, 0), (2, 2), (-1, 1)):  # shift both tokens by the same offset
        torch.testing.assert_close(at(q, 1 + dr, 2 + dc) @ at(k, 3 + dr, 0 + dc), base)
    assert not torch.allclose(at(q, 1, 2) @ at(k, 3, 1), base)  # another offset, another score
    torch.testing.assert_close(at(q, 0, 0), q)  # position (0, 0) is not rotated
    with pytest.raises(ValueError):
        rope_tables(grid, 6)


# ----------------------------------------------------------------------------- the whole model with options on
def reference_forward_with_options(m: DiT, x, t, y):
    """The adaLN-Zero equations of ``reference_forward`` with RMSNorm, RMS qk-norm, SwiGLU, 2-D RoPE
    (complex multiplication by e^{iθ}) and U-ViT long skips written out on the state dict."""
    sd = m.state_dict()
    n, p, heads = x.shape[0], m.patch_size, m.num_heads
    lin = lambda h, k: h @ sd[k + ".weight"].T + sd[k + ".bias"]  # noqa: E731
    rms = lambda h, w=None: h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 if w is None else w)  # noqa: E731
    tok = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=p)  # (N, D, gh, gw)
    gh, gw = tok.shape[2:]
    h = tok.flatten(2).transpose(1, 2) + sd["pos_embed"]  # (N, T, D)
    freqs = torch.exp(-math.log(10000) * torch.arange(128) / 128)
    args = t.float()[:, None] * freqs
    temb = lin(F.silu(lin(torch.cat([torch.cos(args), torch.sin(args)], -1), "t_embedder.mlp.0")), "t_embedder.mlp.2")
    c = temb + sd["y_embedder.embedding_table.weight"][y]  # (N, D)
    d = h.shape[-1]
    hd = d // heads
    # RoPE as complex rotation: pair j of the first half turns by row·f_j, of the second by col·f_j
    f = 10000.0 ** (-torch.arange(hd // 4) / (hd // 4))
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    theta = torch.cat([rows.reshape(-1, 1) * f, cols.reshape(-1, 1) * f], 1)  # (T, hd/2)
    turn = torch.polar(torch.ones_like(theta), theta)

    def rot(v):  # (N, H, T, hd)
        return torch.view_as_real(
            torch.view_as_complex(v.reshape(*v.shape[:-1], hd // 2, 2).contiguous()) * turn
        ).flatten(-2)

    depth, skips = len(m.blocks), []
    for i in range(depth):
        b = f"blocks.{i}."
        if i >= depth - depth // 2:
            h = lin(torch.cat([h, skips.pop()], -1), f"skip_linears.{i - (depth - depth // 2)}")
        sm, cm, gm, s2, c2, g2 = lin(F.silu(c), b + "adaLN_modulation.1").chunk(6, 1)
        a = rms(h) * (1 + cm[:, None]) + sm[:, None]
        q, k, v = lin(a, b + "attn.qkv").reshape(n, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k = rot(rms(q, sd[b + "attn.q_norm.weight"])), rot(rms(k, sd[b + "attn.k_norm.weight"]))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1)
        h = h + gm[:, None] * lin((w @ v).transpose(1, 2).reshape(n, -1, d), b + "attn.proj")
        a = rms(h) * (1 + c2[:, None]) + s2[:, None]
        value, gate = lin(a, b + "mlp.fc1").chunk(2, -1)
        h = h + g2[:, None] * lin(value * F.silu(gate), b + "mlp.fc2")
        if i < depth // 2:
            skips.append(h)
    sf, cf = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, 1)
    out = lin(rms(h) * (1 + cf[:, None]) + sf[:, None], "final_layer.linear")  # (N, T, p*p*C)
    co = m.out_channels
    out = out.reshape(n, gh, gw, p, p, co).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(n, co, gh * p, gw * p)


def test_model_with_every_option_matches_the_written_out_equations():
    m = randomise(tiny(**ALL_ON)).eval()
    x, t, y = inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(x, t, y), reference_forward_with_options(m, x, t, y), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "option",
    [dict(norm="rms"), dict(qk_norm="layer"), dict(mlp="swiglu"), dict(rope=True), dict(long_skip=True), ALL_ON],
)
@pytest.mark.parametrize("block", ["adaln-zero", "cross-attn", "in-context"])
def test_each_option_changes_the_output_and_every_parameter_gets_a_gradient(option, block):
    paper, m = randomise(tiny(block=block)).eval(), randomise(tiny(block=block, **option)).eval()
    x, t, y = inputs()
    out = m(x, t, y)
    with torch.no_grad():
        assert out.shape == paper(x, t, y).shape
        assert not torch.allclose(out, paper(x, t, y))
    out.square().mean().backward()
    for name, prm in m.named_parameters():
        if prm.requires_grad:
            assert prm.grad is not None and prm.grad.abs().sum() > 0, name


def test_long_skips_start_as_identity():
    """[I | 0] skip linears: at init the model equals the same blocks without skips."""
    paper, skip = tiny().eval(), tiny(long_skip=True).eval()
    randomise(paper)
    missing = skip.load_state_dict(paper.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("skip_linears.") for k in missing)
    x, t, y = inputs()
    with torch.no_grad():
        torch.testing.assert_close(skip(x, t, y), paper(x, t, y), rtol=0, atol=1e-6)


def test_options_round_trip_through_config_and_build_model():
    cfg = ModelConfig(
        name=None,
        input_size=8,
        in_channels=4,
        num_classes=10,
        patch_size=2,
        hidden_size=32,
        depth=4,
        num_heads=2,
        **ALL_ON,
        interval_embedding=True,  # MeanFlow's second time input
    )
    m = build_model(ModelConfig.from_dict(cfg.to_dict()))
    every = {**ALL_ON, "interval_embedding": True}
    assert m.config.options() == every and set(every) == set(BLOCK_OPTIONS)
    with pytest.raises(UserError):
        build_model(ModelConfig(name="DiT-S/8", norm="batch"))
    with pytest.raises(UserError, match="divisible by 4"):
        DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=12, depth=1, num_heads=2, rope=True)
