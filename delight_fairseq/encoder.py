"""The DeLighT encoder: embedding, positions, block-wise scaled blocks."""

from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqEncoder
from torch import Tensor, nn

from .config import DeLighTConfig, side
from .delight_layer import DeLighTEncoderLayer
from .embedding import DeLighTEmbedding, build_positions, shared_dropout


class DeLighTEncoder(FairseqEncoder):
    def __init__(self, cfg: DeLighTConfig, dictionary, embed_tokens: DeLighTEmbedding):
        super().__init__(dictionary)
        self.register_buffer("version", torch.Tensor([3]))
        self.padding_idx = embed_tokens.padding_idx
        self.max_source_positions = cfg.max_source_positions
        self.embed_tokens = embed_tokens
        self.embed_positions = build_positions(
            cfg, cfg.max_source_positions, self.padding_idx
        )
        self.pe_dropout = cfg.pe_dropout
        stack = side(cfg, "enc")
        self.layers = nn.ModuleList(
            DeLighTEncoderLayer(cfg, stack, b.depth, b.width_mult)
            for b in stack.schedule()
        )
        # a pre-norm stack ends with one more LayerNorm
        self.layer_norm = (
            nn.LayerNorm(cfg.delight_emb_out_dim)
            if cfg.encoder_normalize_before
            else None
        )

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Optional[Tensor] = None,
        return_all_hiddens: bool = False,
    ) -> Dict[str, List[Tensor]]:
        """src_tokens: B x S. Returns fairseq's encoder-output dictionary with
        ``encoder_out`` S x B x d_m and ``encoder_padding_mask`` B x S."""
        padding_mask = src_tokens.eq(self.padding_idx)
        x = self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        x = shared_dropout(x, self.pe_dropout, self.training)
        # B x S x C -> S x B x C
        x = x.transpose(0, 1)

        states: List[Tensor] = []
        if return_all_hiddens:
            states.append(x)
        for layer in self.layers:
            x = layer(x, padding_mask)
            if return_all_hiddens:
                states.append(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)

        return {
            "encoder_out": [x],
            "encoder_padding_mask": [padding_mask],
            "encoder_embedding": [],
            "encoder_states": states,
            "src_tokens": [],
            "src_lengths": [src_lengths] if src_lengths is not None else [],
        }

    @torch.jit.export
    def reorder_encoder_out(
        self, encoder_out: Dict[str, List[Tensor]], new_order: Tensor
    ) -> Dict[str, List[Tensor]]:
        """Follow the beam: batch is dim 1 of outputs, dim 0 of masks."""
        reordered: Dict[str, List[Tensor]] = {}
        for key, values in encoder_out.items():
            dim = 1 if key in ("encoder_out", "encoder_states") else 0
            reordered[key] = [v.index_select(dim, new_order) for v in values]
        return reordered

    def max_positions(self) -> int:
        return min(self.max_source_positions, self.embed_positions.max_positions)
