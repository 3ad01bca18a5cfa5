"""The DeLighT decoder, with fairseq's incremental decoding."""

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.models import FairseqIncrementalDecoder
from torch import Tensor, nn

from .config import DeLighTConfig, side
from .delight_layer import DeLighTDecoderLayer
from .embedding import DeLighTEmbedding, build_positions, shared_dropout
from .group_linear import Linear


class DeLighTDecoder(FairseqIncrementalDecoder):
    """Blocks, then Linear(d_m -> map_dim) and the (tied) look-up table as the
    softmax weights (docs/architecture.md section 7)."""

    def __init__(self, cfg: DeLighTConfig, dictionary, embed_tokens: DeLighTEmbedding):
        super().__init__(dictionary)
        self.register_buffer("version", torch.Tensor([3]))
        d_m = cfg.delight_emb_out_dim
        map_dim = cfg.delight_emb_map_dim
        self.padding_idx = embed_tokens.padding_idx
        self.max_target_positions = cfg.max_target_positions
        self.embed_tokens = embed_tokens
        self.embed_positions = build_positions(
            cfg, cfg.max_target_positions, self.padding_idx
        )
        self.pe_dropout = cfg.pe_dropout
        stack = side(cfg, "dec")
        self.layers = nn.ModuleList(
            DeLighTDecoderLayer(cfg, stack, b.depth, b.width_mult)
            for b in stack.schedule()
        )
        self.layer_norm = nn.LayerNorm(d_m) if cfg.decoder_normalize_before else None
        self.project_out_dim = (
            Linear(d_m, map_dim, bias=False) if d_m != map_dim else None
        )
        self.share_input_output_embed = cfg.share_decoder_input_output_embed
        self.output_projection: Optional[nn.Linear] = None
        if not self.share_input_output_embed:
            # the authors' untied output layer: Xavier-uniform on the V x map_dim
            # weight (smaller starting logits than the table's N(0, map_dim^-0.5))
            self.output_projection = Linear(map_dim, len(dictionary), bias=False)
        self._future_mask = torch.empty(0)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Optional[Dict[str, List[Tensor]]] = None,
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        features_only: bool = False,
        full_context_alignment: bool = False,
        alignment_layer: Optional[int] = None,
        alignment_heads: Optional[int] = None,
        src_lengths: Optional[Any] = None,
        return_all_hiddens: bool = False,
    ):
        """prev_output_tokens: B x T. Returns B x T x V scores (or B x T x
        map_dim features) and ``{"attn": [B x T x S], "inner_states": [...]}``."""
        x, extra = self.extract_features(
            prev_output_tokens,
            encoder_out=encoder_out,
            incremental_state=incremental_state,
            full_context_alignment=full_context_alignment,
            alignment_layer=alignment_layer,
            alignment_heads=alignment_heads,
        )
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: Optional[Dict[str, List[Tensor]]] = None,
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        full_context_alignment: bool = False,
        alignment_layer: Optional[int] = None,
        alignment_heads: Optional[int] = None,
    ) -> Tuple[Tensor, Dict[str, List[Optional[Tensor]]]]:
        if full_context_alignment:
            raise ValueError(
                "DeLighT has no full-context alignment (fairseq's transformer_align "
                "training): train it without --full-context-alignment. "
                "--print-alignment works: it reads the encoder-decoder attention of "
                "--alignment-layer (default: the last block)"
            )
        if alignment_heads is not None and alignment_heads != 1:
            raise ValueError(
                f"--alignment-heads is {alignment_heads}, but DeLighT's attention has "
                "one head: drop the flag or set it to 1"
            )
        if alignment_layer is None:
            alignment_layer = len(self.layers) - 1

        enc: Optional[Tensor] = None
        enc_mask: Optional[Tensor] = None
        if encoder_out is not None and len(encoder_out["encoder_out"]) > 0:
            enc = encoder_out["encoder_out"][0]
        if encoder_out is not None and len(encoder_out["encoder_padding_mask"]) > 0:
            enc_mask = encoder_out["encoder_padding_mask"][0]

        positions = self.embed_positions(
            prev_output_tokens, incremental_state=incremental_state
        )
        if incremental_state is not None:
            # only the newest token is new; the rest sits in the attention cache
            prev_output_tokens = prev_output_tokens[:, -1:]
            positions = positions[:, -1:]

        x = self.embed_tokens(prev_output_tokens) + positions
        x = shared_dropout(x, self.pe_dropout, self.training)
        # B x T x C -> T x B x C
        x = x.transpose(0, 1)

        self_attn_mask: Optional[Tensor] = None
        self_attn_padding_mask: Optional[Tensor] = None
        if incremental_state is None:
            self_attn_mask = self.buffered_future_mask(x)
            if prev_output_tokens.eq(self.padding_idx).any():
                self_attn_padding_mask = prev_output_tokens.eq(self.padding_idx)

        attn: Optional[Tensor] = None
        inner_states: List[Optional[Tensor]] = [x]
        for idx, layer in enumerate(self.layers):
            x, layer_attn = layer(
                x,
                enc,
                enc_mask,
                incremental_state,
                self_attn_mask=self_attn_mask,
                self_attn_padding_mask=self_attn_padding_mask,
                need_attn=bool(idx == alignment_layer),
            )
            inner_states.append(x)
            if layer_attn is not None and idx == alignment_layer:
                attn = layer_attn.float().to(x)

        if self.layer_norm is not None:
            x = self.layer_norm(x)
        # T x B x C -> B x T x C
        x = x.transpose(0, 1)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x, {"attn": [attn], "inner_states": inner_states}

    def output_weight(self) -> Tensor:
        """The V x map_dim weight of the output layer (the table when tied)."""
        if self.output_projection is None:
            return self.embed_tokens.table.weight
        return self.output_projection.weight

    def output_layer(self, features: Tensor) -> Tensor:
        """B x T x map_dim -> B x T x V."""
        return F.linear(features, self.output_weight())

    def max_positions(self) -> int:
        return min(self.max_target_positions, self.embed_positions.max_positions)

    def buffered_future_mask(self, tensor: Tensor) -> Tensor:
        dim = tensor.size(0)
        if self._future_mask.size(0) < dim or self._future_mask.device != tensor.device:
            self._future_mask = torch.triu(
                utils.fill_with_neg_inf(torch.zeros([dim, dim])), 1
            )
        self._future_mask = self._future_mask.to(tensor)
        return self._future_mask[:dim, :dim]
