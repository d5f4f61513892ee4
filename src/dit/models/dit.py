"""The DiT model: patchify → + fixed position embedding → N conditioned blocks → final layer → unpatchify.

Faithful to the official ``models.py`` (same keys and shapes for ``block="adaln-zero"``, same
initialisation and timestep features) and extended with: rectangular inputs, unconditional
models (``num_classes=0``), the paper's other block designs, caller-chosen label dropout
(``drop_mask``) and a choice of guided channels in :meth:`DiT.forward_with_cfg`.
The model knows nothing about parallelism; wrappers (DDP/FSDP/checkpointing) act from outside.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dit.config import BlockDesign, GuidanceChannels, MlpType, ModelConfig, NormType, QkNormType, guided_channel_count
from dit.errors import UserError
from dit.models.blocks import BLOCK_DESIGNS, DiTBlock, FinalLayer
from dit.models.embeddings import LabelEmbedder, PatchEmbed, TimestepEmbedder, linear_at, sincos_pos_embed_2d
from dit.models.rope import rope_tables


def as_hw(input_size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """An int side or an (H, W) pair → (H, W)."""
    if isinstance(input_size, int):
        return input_size, input_size
    hw = tuple(int(s) for s in input_size)
    if len(hw) != 2:
        raise UserError(f"input_size must be an int or an (H, W) pair, got {input_size!r}")
    return hw  # type: ignore[return-value]


def _check_arguments(h: int, w: int, patch: int, channels: int, width: int, depth: int, heads: int) -> None:
    if min(h, w, patch, channels, width, depth, heads) <= 0:
        raise UserError(
            f"input size {h}x{w}, patch {patch}, channels {channels}, width {width}, depth {depth} "
            f"and heads {heads} must all be positive; check the image size and the model size"
        )
    if h % patch or w % patch:
        raise UserError(f"patch size {patch} must divide the input size {h}x{w}; pick another size or model")


def _check_options(block: str, num_classes: int, class_dropout_prob: float) -> None:
    if block not in BLOCK_DESIGNS:
        raise UserError(f"unknown block design {block!r}; choose one of {', '.join(BLOCK_DESIGNS)}")
    if num_classes < 0:
        raise UserError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}")
    if not 0.0 <= class_dropout_prob < 1.0:
        raise UserError(f"class_dropout_prob must be in [0, 1), got {class_dropout_prob}")


class DiT(nn.Module):
    """Diffusion Transformer (Peebles & Xie, 2023) with the official keyword names.

    ``block`` picks the conditioning design: ``"adaln-zero"`` (the paper's DiT, official keys),
    ``"adaln"``, ``"cross-attn"`` or ``"in-context"``. ``num_classes=0`` builds an unconditional
    model (no ``y_embedder``; ``y`` is ignored). The null class index is ``num_classes``.
    """

    def __init__(
        self,
        input_size: Union[int, Sequence[int]] = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        block: BlockDesign = "adaln-zero",
        norm: NormType = "layer",
        qk_norm: QkNormType = "none",
        mlp: MlpType = "gelu",
        rope: bool = False,
        long_skip: bool = False,
        interval_embedding: bool = False,
    ):
        super().__init__()
        h, w = as_hw(input_size)
        _check_arguments(h, w, patch_size, in_channels, hidden_size, depth, num_heads)
        _check_options(block, num_classes, class_dropout_prob)

        self.input_size = (h, w)
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.num_classes, self.num_heads, self.block = num_classes, num_heads, block
        self.grid_size = (h // patch_size, w // patch_size)
        self.config = ModelConfig(
            name=None,
            input_size=input_size if isinstance(input_size, int) else (h, w),
            in_channels=in_channels,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
            class_dropout_prob=class_dropout_prob,
            block=block,
            patch_size=patch_size,
            hidden_size=hidden_size,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            norm=norm,
            qk_norm=qk_norm,
            mlp=mlp,
            rope=bool(rope),
            long_skip=bool(long_skip),
            interval_embedding=bool(interval_embedding),
        )
        self.config.validate()
        self.rope = bool(rope)

        self._build_modules(self.config)
        self.initialize_weights()
        # Built after the paper's initialisation, so every other weight is drawn exactly as without it.
        self.interval_embedder = self._interval_embedder(hidden_size) if interval_embedding else None

    def _build_modules(self, c: ModelConfig) -> None:
        """Every submodule, in the official order (the state dict's key order and the init's RNG order)."""
        width, depth, heads, patch = c.hidden_size, c.depth, c.num_heads, c.patch_size
        assert width is not None and depth is not None and heads is not None and patch is not None  # set by __init__
        self.x_embedder = PatchEmbed(patch, c.in_channels, width)
        self.t_embedder = TimestepEmbedder(width)
        self.y_embedder = LabelEmbedder(c.num_classes, width, c.class_dropout_prob) if c.num_classes > 0 else None
        # Fixed sin-cos embedding: a frozen parameter (not a buffer) so the state dict matches the official one.
        num_tokens = self.grid_size[0] * self.grid_size[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width), requires_grad=False)
        self.blocks = nn.ModuleList(
            [DiTBlock(width, heads, c.mlp_ratio, c.block, c.norm, c.qk_norm, c.mlp) for _ in range(depth)]
        )
        # U-ViT long skips: the input of block depth-1-i gets Linear(cat[x, output of block i]), i < depth//2
        skips = [nn.Linear(2 * width, width) for _ in range(depth // 2)] if c.long_skip else None
        self.skip_linears = nn.ModuleList(skips) if skips is not None else None
        self.final_layer = FinalLayer(width, patch, self.out_channels, c.norm)

    @staticmethod
    def _interval_embedder(hidden_size: int) -> TimestepEmbedder:
        """MeanFlow's second time input (the interval t − r): t's embedder design, its output layer
        zero-initialised so that the model starts as the instantaneous-velocity model it extends."""
        emb = TimestepEmbedder(hidden_size)
        nn.init.normal_(linear_at(emb.mlp, 0).weight, std=0.02)
        nn.init.zeros_(linear_at(emb.mlp, 0).bias)
        nn.init.zeros_(linear_at(emb.mlp, 2).weight)
        nn.init.zeros_(linear_at(emb.mlp, 2).bias)
        return emb

    # ------------------------------------------------------------------ initialisation
    def initialize_weights(self) -> None:
        """The paper's initialisation (official ``initialize_weights``).

        Xavier-uniform linears with zero bias; patch embed initialised like a linear layer; class
        table and timestep MLP N(0, 0.02); adaLN-Zero modulations and the final layer (its
        modulation and its linear) zero, so every adaLN-Zero block starts as the identity and the
        model outputs zeros. ``block="adaln"`` keeps Xavier for its block modulations (no zero init).
        """

        def _basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic)
        with torch.no_grad():
            pe = sincos_pos_embed_2d(self.pos_embed.shape[-1], self.grid_size)  # (T, D)
            self.pos_embed.copy_(pe.float().unsqueeze(0).to(self.pos_embed.device))  # (1, T, D)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if self.x_embedder.proj.bias is not None:
            nn.init.zeros_(self.x_embedder.proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(linear_at(self.t_embedder.mlp, 0).weight, std=0.02)
        nn.init.normal_(linear_at(self.t_embedder.mlp, 2).weight, std=0.02)
        if self.block == "adaln-zero":
            for blk in self.blocks:
                assert isinstance(blk, DiTBlock)
                modulation = linear_at(blk.adaLN_modulation, -1)
                nn.init.zeros_(modulation.weight)
                nn.init.zeros_(modulation.bias)
        for lin in self.skip_linears or []:  # [I | 0]: the model still starts as the paper's DiT
            assert isinstance(lin, nn.Linear)
            nn.init.zeros_(lin.bias)
            with torch.no_grad():
                lin.weight.copy_(
                    torch.cat([torch.eye(lin.out_features), torch.zeros_like(lin.weight[:, lin.out_features :])], 1)
                )
        final_modulation = linear_at(self.final_layer.adaLN_modulation, -1)
        nn.init.zeros_(final_modulation.weight)
        nn.init.zeros_(final_modulation.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    # ------------------------------------------------------------------ forward
    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) per-patch outputs → (N, C, H, W) images (rectangular grids work)."""
        n = x.shape[0]
        p, c = self.patch_size, self.out_channels
        gh, gw = self.grid_size
        x = x.reshape(n, gh, gw, p, p, c)  # (N, gh, gw, p, p, C)
        x = torch.einsum("nhwpqc->nchpwq", x)  # (N, C, gh, p, gw, p)
        return x.reshape(n, c, gh * p, gw * p)  # (N, C, H, W)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != self.input_size:
            h, w = self.input_size
            raise UserError(
                f"model expects input of shape (N, {self.in_channels}, {h}, {w}), got {tuple(x.shape)}; "
                "check the model's input_size and in_channels"
            )

    def _labels(self, y: Optional[torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
        """Class labels as (N,) long; ``y=None`` means the null class (needs class_dropout_prob > 0)."""
        if y is None:
            if self.y_embedder is None or not self.y_embedder.has_null_class:
                raise UserError("this class-conditional model needs labels y (it has no null class)")
            return torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        y = torch.as_tensor(y, device=device).long().reshape(-1)  # (N,) or (1,)
        return y.expand(n) if y.numel() == 1 else y  # (N,)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        drop_mask: Optional[torch.Tensor] = None,
        interval: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict (N, C_out, H, W) from noisy x (N, C, H, W), timesteps t (N,) and labels y (N,).

        t may be int or float (a scalar is broadcast). y is ignored by unconditional models
        (num_classes=0); ``y=None`` on a conditional model means the null class. In training mode labels are dropped
        to the null class with probability ``class_dropout_prob`` (torch.rand), unless the caller passes
        ``drop_mask`` (bool (N,)), which is then used as is, in any mode. ``interval`` (N,) or scalar, in
        t's units: MeanFlow's t − r, for a model built with ``interval_embedding`` (None: 0, r = t).
        """
        self._check_input(x)
        n = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(n) if t.dim() == 0 else t  # (N,)
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        t_emb = self.t_embedder(t)  # (N, D)
        if self.interval_embedder is not None:
            h = torch.zeros_like(t) if interval is None else torch.as_tensor(interval, device=x.device).expand(n)
            t_emb = t_emb + self.interval_embedder(h)  # (N, D)
        elif interval is not None:
            raise UserError("this model has no interval embedding (it was not trained with the meanflow objective)")
        cond = [t_emb]  # [(N, D)]
        if self.y_embedder is not None:
            labels = self._labels(y, n, x.device)  # (N,)
            cond.append(self.y_embedder(labels, self.training, force_drop_ids=drop_mask))  # (N, D)
        c = torch.stack(cond, dim=1)  # (N, L, D) conditioning tokens [t_emb, y_emb]
        c_vec = c.sum(dim=1)  # (N, D) = t_emb + y_emb
        num_tokens = x.shape[1]
        if self.block == "in-context":
            x = torch.cat([x, c], dim=1)  # (N, T + L, D)
        rope = None
        if self.rope:  # (T(+L), hd/2) each; conditioning tokens are not rotated
            rope = rope_tables(self.grid_size, x.shape[-1] // self.num_heads, x.shape[1] - num_tokens, x.device)
        x = self._run_blocks(x, c_vec, c, rope)  # (N, T(+L), D)
        x = x[:, :num_tokens]  # (N, T, D) in-context tokens stripped
        x = self.final_layer(x, c_vec)  # (N, T, p*p*C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)

    def _run_blocks(self, x: torch.Tensor, c_vec: torch.Tensor, c: torch.Tensor, rope) -> torch.Tensor:
        """The blocks in order; with long skips, the first half's outputs feed the second half."""
        depth = len(self.blocks)
        skip_linears = list(self.skip_linears) if self.skip_linears is not None else []
        n_skip = len(skip_linears)
        skips: list[torch.Tensor] = []
        for i, blk in enumerate(self.blocks):
            if i >= depth - n_skip:
                x = skip_linears[i - (depth - n_skip)](torch.cat([x, skips.pop()], dim=-1))  # (N, T, D)
            x = blk(x, c_vec, c, rope)  # (N, T, D)
            if i < n_skip:
                skips.append(x)
        return x

    def forward_with_cfg(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        cfg_scale: float,
        guidance_channels: GuidanceChannels = "all",
    ) -> torch.Tensor:
        """Classifier-free guidance in one batched forward (the official semantics).

        The batch is [conditional rows; null-label rows]: only the first half of ``x`` is used
        (duplicated), ``y`` carries the real labels then the null label ``num_classes``. The guided
        ε̂ = ε_uncond + s·(ε_cond − ε_uncond) is written to both halves. ``guidance_channels``
        (the name used everywhere, :data:`dit.config.GUIDANCE_CHANNELS`): ``"all"`` (default) guides
        all ``in_channels`` ε channels, the standard form; ``"official"`` reproduces the official
        code, which guides only the first 3 of the 4 latent channels "for exact reproducibility". Remaining
        channels (the unguided ones and the variance channels) pass through unchanged.
        """
        if x.shape[0] % 2:
            raise UserError(f"forward_with_cfg needs an even batch (conditional + null halves), got {x.shape[0]}")
        g = guided_channel_count(guidance_channels, self.in_channels)
        half = x[: x.shape[0] // 2]  # (N/2, C, H, W)
        out = self.forward(torch.cat([half, half], dim=0), t, y)  # (N, C_out, H, W)
        eps, rest = out[:, :g], out[:, g:]  # (N, g, H, W), (N, C_out - g, H, W)
        cond_eps, uncond_eps = eps.chunk(2, dim=0)  # 2 × (N/2, g, H, W)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)  # (N/2, g, H, W)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)  # (N, C_out, H, W)
