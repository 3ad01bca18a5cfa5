"""DeLighT encoder and decoder blocks (docs/architecture.md section 5).

Each block: DExTra -> single-head attention (d_m/2 wide) -> light FFN that
reduces d_m -> d_m/r -> d_m. Residual connections surround the attention part
and the FFN part; LayerNorm comes after each (post-norm) unless
``normalize_before`` is set.

Activation checkpointing (docs/architecture.md section 11): with
``--checkpoint-activations`` a block keeps only its input in training and runs
again in the backward pass; with ``--delight-checkpoint-dextra`` only its
DExTra unit does. Evaluation, ``no_grad`` and incremental decoding run as usual.

With ``--delight-compile`` each block's DExTra runs through ``torch.compile``
(compiling.py, docs/architecture.md section 12), compiled on first use; inside
a checkpointed block or DExTra the compiled unit is what runs and reruns.
TorchScript, and a model compiled as a whole, run the unit as written.
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import compiling, fused
from .attention import SingleHeadAttention
from .config import Side
from .dextra import DExTra
from .group_linear import Linear


def checkpointed(fn, x: Tensor, offload: bool = False, **kwargs):
    """``fn(x, **kwargs)``, keeping only its inputs for the backward pass, which
    runs ``fn`` again to rebuild the rest.

    torch's non-reentrant checkpoint: it restores the random state before the
    rerun, so dropout draws the same masks; it re-runs the fused GLT kernel's
    autograd Function like any other op (its saved tensors are rebuilt, and
    checked against the first run's in number, shape and dtype); gradients
    reach the parameters and ``kwargs`` (the encoder output) as without it.
    ``offload``: the kept input waits in CPU memory (a copy out and back for
    a GPU tensor; nothing for a CPU one).
    """
    if offload and x.device.type != "cpu":
        pin = torch.cuda.is_available()
        with torch.autograd.graph.save_on_cpu(pin_memory=pin):
            return checkpoint(fn, x, use_reentrant=False, **kwargs)
    return checkpoint(fn, x, use_reentrant=False, **kwargs)


def checkpoint_flags(cfg) -> Tuple[bool, bool, bool]:
    """(offload, per block, per DExTra): the checkpointing that ``cfg``'s flags ask
    for. The registered model's config declares them (model.DeLighTModelConfig);
    a bare architecture config (config.DeLighTConfig) trains without them.
    Offloading implies per-block checkpointing, and inside a checkpointed block
    the DExTra is rerun anyway."""
    offload = bool(getattr(cfg, "offload_activations", False))
    per_block = offload or bool(getattr(cfg, "checkpoint_activations", False))
    per_dextra = not per_block and bool(
        getattr(cfg, "delight_checkpoint_dextra", False)
    )
    return offload, per_block, per_dextra


class LightFFN(nn.Module):
    """Linear(d_m, h) -> swish -> dropout -> Linear(h, d_m) -> dropout, where the
    hidden width h is d_m / r in the paper (config.Side.ffn_width)."""

    def __init__(
        self,
        embed_dim: int,
        hidden_dim: int,
        activation_dropout: float,
        ffn_dropout: float,
    ):
        super().__init__()
        self.fc1 = Linear(embed_dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, embed_dim)
        self.activation_dropout = activation_dropout
        self.ffn_dropout = ffn_dropout
        self.fast_dropout = False  # fused.set_fast_dropout

    def forward(self, x: Tensor) -> Tensor:
        x = F.silu(self.fc1(x))
        x = fused.dropout(x, self.activation_dropout, self.training, self.fast_dropout)
        x = self.fc2(x)
        return fused.dropout(x, self.ffn_dropout, self.training, self.fast_dropout)


class _Sublayer(nn.Module):
    """Residual + LayerNorm bookkeeping shared by every part of a block."""

    def __init__(self, embed_dim: int, normalize_before: bool):
        super().__init__()
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.normalize_before = normalize_before

    def pre(self, x: Tensor) -> Tensor:
        return self.layer_norm(x) if self.normalize_before else x

    def post(self, x: Tensor, residual: Tensor) -> Tensor:
        x = residual + x
        return x if self.normalize_before else self.layer_norm(x)


class _DeLighTBlock(nn.Module):
    """What every block has: DExTra feeding single-head self-attention, and the
    light FFN. ``side`` is the encoder's or decoder's view of the flags."""

    def __init__(self, cfg, side: Side, depth: int, width_mult: float):
        super().__init__()
        d_m = cfg.delight_emb_out_dim
        proj = d_m // 2
        self.dropout = cfg.dropout
        self.fast_dropout = False  # fused.set_fast_dropout
        self.dextra = DExTra(
            d_m,
            proj,
            proj,
            depth,
            width_mult,
            side.max_groups,
            dropout=cfg.delight_dropout,
            shuffle=not cfg.no_glt_shuffle,
        )
        self.self_attn = SingleHeadAttention(
            proj,
            proj,
            d_m,
            dropout=cfg.attention_dropout,
            self_attention=True,
            heads=cfg.delight_attention_heads,
        )
        self.self_attn_norm = _Sublayer(d_m, side.normalize_before)
        self.ffn = LightFFN(
            d_m, side.ffn_width(d_m), cfg.activation_dropout, cfg.ffn_dropout
        )
        self.ffn_norm = _Sublayer(d_m, side.normalize_before)
        (
            self.offload_activations,
            self.checkpoint_activations,
            self.checkpoint_dextra,
        ) = checkpoint_flags(cfg)
        # a flag, not a compiled wrapper: compiling.py holds those, out of the
        # module tree (state dicts, pickles and copies stay the eager model's)
        self.compile_dextra = bool(getattr(cfg, "delight_compile", False))

    def run_dextra(self, x: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            dextra = self.dextra
            # an enclosing torch.compile traces the unit itself
            if self.compile_dextra and not torch.compiler.is_compiling():
                dextra = self._compiled_dextra
            if self.checkpoint_dextra and self.training and torch.is_grad_enabled():
                return checkpointed(dextra, x)
            return dextra(x)
        return self.dextra(x)

    @torch.jit.unused
    def _compiled_dextra(self, x: Tensor) -> Tensor:
        return compiling.run(self.dextra, x)


class DeLighTEncoderLayer(_DeLighTBlock):
    """Encoder block: DExTra + self-attention, then the light FFN."""

    def __init__(self, cfg, side: Side, depth: int, width_mult: float):
        super().__init__(cfg, side, depth, width_mult)

    def forward(self, x: Tensor, encoder_padding_mask: Optional[Tensor]) -> Tensor:
        """x: T x B x d_m; encoder_padding_mask: B x T, True at padding."""
        if not torch.jit.is_scripting():
            if self.checkpoint_activations and self.training:
                if torch.is_grad_enabled():
                    return checkpointed(
                        self._forward,
                        x,
                        self.offload_activations,
                        encoder_padding_mask=encoder_padding_mask,
                    )
        return self._forward(x, encoder_padding_mask)

    def _forward(self, x: Tensor, encoder_padding_mask: Optional[Tensor]) -> Tensor:
        residual = x
        x = self.run_dextra(self.self_attn_norm.pre(x))
        x, _ = self.self_attn(x, key_padding_mask=encoder_padding_mask)
        x = fused.dropout(x, self.dropout, self.training, self.fast_dropout)
        x = self.self_attn_norm.post(x, residual)

        residual = x
        x = self.ffn(self.ffn_norm.pre(x))
        return self.ffn_norm.post(x, residual)


class DeLighTDecoderLayer(_DeLighTBlock):
    """Decoder block: DExTra + causal self-attention, encoder-decoder
    attention (query straight from the block's stream), then the light FFN."""

    def __init__(self, cfg, side: Side, depth: int, width_mult: float):
        super().__init__(cfg, side, depth, width_mult)
        d_m = cfg.delight_emb_out_dim
        # d_m/2 as the paper's, or --delight-enc-dec-attn-dim (off the paper)
        cross = cfg.delight_enc_dec_attn_dim or d_m // 2
        self.encoder_attn = SingleHeadAttention(
            d_m,
            cross,
            d_m,
            key_dim=d_m,
            dropout=cfg.attention_dropout,
            self_attention=False,
            heads=cfg.delight_attention_heads,
        )
        self.encoder_attn_norm = _Sublayer(d_m, side.normalize_before)

    def forward(
        self,
        x: Tensor,
        encoder_out: Optional[Tensor],
        encoder_padding_mask: Optional[Tensor],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        self_attn_mask: Optional[Tensor] = None,
        self_attn_padding_mask: Optional[Tensor] = None,
        need_attn: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """x: T x B x d_m; encoder_out: S x B x d_m. Returns the block's output
        and, if ``need_attn``, the B x T x S encoder-decoder attention."""
        if not torch.jit.is_scripting():
            # decoding steps (incremental_state) fill a cache: never rerun them
            if self.checkpoint_activations and self.training:
                if incremental_state is None and torch.is_grad_enabled():
                    return checkpointed(
                        self._forward,
                        x,
                        self.offload_activations,
                        encoder_out=encoder_out,
                        encoder_padding_mask=encoder_padding_mask,
                        self_attn_mask=self_attn_mask,
                        self_attn_padding_mask=self_attn_padding_mask,
                        need_attn=need_attn,
                    )
        return self._forward(
            x,
            encoder_out,
            encoder_padding_mask,
            incremental_state,
            self_attn_mask,
            self_attn_padding_mask,
            need_attn,
        )

    def _forward(
        self,
        x: Tensor,
        encoder_out: Optional[Tensor],
        encoder_padding_mask: Optional[Tensor],
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        self_attn_mask: Optional[Tensor] = None,
        self_attn_padding_mask: Optional[Tensor] = None,
        need_attn: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        residual = x
        x = self.run_dextra(self.self_attn_norm.pre(x))
        x, _ = self.self_attn(
            x,
            key_padding_mask=self_attn_padding_mask,
            attn_mask=self_attn_mask,
            incremental_state=incremental_state,
        )
        x = fused.dropout(x, self.dropout, self.training, self.fast_dropout)
        x = self.self_attn_norm.post(x, residual)

        attn: Optional[Tensor] = None
        if encoder_out is not None:
            residual = x
            x, attn = self.encoder_attn(
                self.encoder_attn_norm.pre(x),
                key=encoder_out,
                key_padding_mask=encoder_padding_mask,
                incremental_state=incremental_state,
                need_weights=need_attn,
            )
            x = fused.dropout(x, self.dropout, self.training, self.fast_dropout)
            x = self.encoder_attn_norm.post(x, residual)

        residual = x
        x = self.ffn(self.ffn_norm.pre(x))
        return self.ffn_norm.post(x, residual), attn
