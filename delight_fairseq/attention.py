"""Single-head attention, with fairseq's incremental state (docs/architecture.md
sections 5 and 9); ``--delight-attention-heads`` splits it into heads (off the
paper, section 15).

fairseq's MultiheadAttention cannot express it: DeLighT's attention reads a
query narrower or wider than its projection (d_m/2 after DExTra, d_m for the
encoder-decoder query) and writes d_m, where MultiheadAttention keeps one
width throughout. The incremental-state protocol is fairseq's own
(``with_incremental_state``), so beam search and its reordering work unchanged.
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

from . import fused
from .group_linear import Linear


def split_heads(x: Tensor, heads: int) -> Tensor:
    """B x L x C -> (B x heads) x L x C / heads, each sample's heads together
    (head h: channels h x C/heads to (h + 1) x C/heads)."""
    if heads == 1:
        return x
    b, length, width = x.shape
    x = x.reshape(b, length, heads, width // heads).transpose(1, 2)
    return x.reshape(b * heads, length, width // heads)


def merge_heads(x: Tensor, heads: int) -> Tensor:
    """(B x heads) x L x C / heads -> B x L x C, the heads side by side."""
    if heads == 1:
        return x
    rows, length, width = x.shape
    x = x.reshape(rows // heads, heads, length, width).transpose(1, 2)
    return x.reshape(rows // heads, length, heads * width)


@with_incremental_state
class SingleHeadAttention(nn.Module):
    """One attention head of width ``proj_dim`` with an output of ``out_dim``,
    or ``heads`` heads of proj_dim / heads each, with the same weights' shapes.

    Self-attention projects q, k and v with one Linear(query_dim, 3 proj_dim).
    Encoder-decoder attention projects q from the query with
    Linear(query_dim, proj_dim) and k, v from the encoder output with one
    Linear(key_dim, 2 proj_dim). Both end with Linear(proj_dim, out_dim).
    """

    def __init__(
        self,
        query_dim: int,
        proj_dim: int,
        out_dim: int,
        key_dim: Optional[int] = None,
        dropout: float = 0.0,
        self_attention: bool = True,
        heads: int = 1,
    ):
        super().__init__()
        if heads < 1 or proj_dim % heads:
            raise ValueError(
                f"{heads} attention heads do not split the attention's width "
                f"{proj_dim}; use a divisor of it"
            )
        self.proj_dim = proj_dim
        self.heads = heads
        self.dropout = dropout
        self.fast_dropout = False  # fused.set_fast_dropout
        self.self_attention = self_attention
        self.scaling = (proj_dim // heads) ** -0.5
        if self_attention:
            self.qkv_proj = Linear(query_dim, 3 * proj_dim)
        else:
            self.q_proj = Linear(query_dim, proj_dim)
            self.kv_proj = Linear(key_dim or query_dim, 2 * proj_dim)
        self.out_proj = Linear(proj_dim, out_dim)

    def _project(
        self, query: Tensor, key: Optional[Tensor]
    ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        # hasattr, not self.self_attention: TorchScript resolves it while
        # compiling and skips the branch whose layers this module lacks
        if hasattr(self, "qkv_proj"):
            q, k, v = self.qkv_proj(query).chunk(3, dim=-1)
            return q, k, v
        q = self.q_proj(query)
        if key is None:
            return q, None, None
        k, v = self.kv_proj(key).chunk(2, dim=-1)
        return q, k, v

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        attn_mask: Optional[Tensor] = None,
        incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
        need_weights: bool = False,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """
        Args:
            query: T x B x C_q
            key: S x B x C_k, the encoder output (encoder-decoder attention only)
            key_padding_mask: B x S, True at padding
            attn_mask: T x S, added to the scores (-inf hides a position)
            incremental_state: fairseq's decoding cache; self-attention appends
                this step's key and value, encoder-decoder attention computes
                them once and reuses them
        Returns:
            T x B x out_dim, and the B x T x S attention weights if asked for
        """
        saved: Optional[Dict[str, Optional[Tensor]]] = None
        if incremental_state is not None:
            saved = self._get_input_buffer(incremental_state)
            if not self.self_attention and "prev_key" in saved:
                key = None  # static keys and values are cached

        q, k, v = self._project(query, key)
        # T x B x C -> B x T x C
        q = (q * self.scaling).transpose(0, 1)
        if k is not None:
            k = k.transpose(0, 1)
        if v is not None:
            v = v.transpose(0, 1)

        if saved is not None:
            prev_key = saved.get("prev_key")
            prev_value = saved.get("prev_value")
            if prev_key is not None and prev_value is not None:
                if self.self_attention:
                    assert k is not None and v is not None
                    k = torch.cat([prev_key, k], dim=1)
                    v = torch.cat([prev_value, v], dim=1)
                else:
                    k, v = prev_key, prev_value
            assert k is not None and v is not None
            saved["prev_key"] = k
            saved["prev_value"] = v
            assert incremental_state is not None
            self._set_input_buffer(incremental_state, saved)
        assert k is not None and v is not None

        # the cache keeps whole widths (B x S x C); heads split them here
        batch = q.size(0)
        heads = self.heads
        q, k, v = split_heads(q, heads), split_heads(k, heads), split_heads(v, heads)
        # B' x T x C' @ B' x C' x S -> B' x T x S, where B' = B x heads
        scores = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            scores = scores + attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            padding = key_padding_mask.to(torch.bool)
            if heads > 1:
                padding = padding.repeat_interleave(heads, dim=0)
            scores = scores.masked_fill(padding.unsqueeze(1), float("-inf"))
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).type_as(scores)
        probs = fused.dropout(weights, self.dropout, self.training, self.fast_dropout)
        # B' x T x S @ B' x S x C' -> B' x T x C' -> T x B x C
        out = merge_heads(torch.bmm(probs, v), heads).transpose(0, 1)
        out = self.out_proj(out)
        if need_weights:
            if heads > 1:
                # averaged over the heads, as fairseq's MultiheadAttention does
                weights = weights.view(batch, heads, -1, weights.size(-1))
                weights = weights.mean(dim=1)
            return out, weights
        return out, None

    def reorder_incremental_state(
        self,
        incremental_state: Dict[str, Dict[str, Optional[Tensor]]],
        new_order: Tensor,
    ):
        """Follow the beam: reorder every cached tensor along the batch."""
        buffer = self._get_input_buffer(incremental_state)
        for name in list(buffer.keys()):
            cached = buffer[name]
            if cached is not None:
                buffer[name] = cached.index_select(0, new_order)
        self._set_input_buffer(incremental_state, buffer)
        return incremental_state

    def _get_input_buffer(
        self, incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]]
    ) -> Dict[str, Optional[Tensor]]:
        result = self.get_incremental_state(incremental_state, "attn_state")
        if result is not None:
            return result
        empty: Dict[str, Optional[Tensor]] = {}
        return empty

    def _set_input_buffer(
        self,
        incremental_state: Dict[str, Dict[str, Optional[Tensor]]],
        buffer: Dict[str, Optional[Tensor]],
    ):
        return self.set_incremental_state(incremental_state, "attn_state", buffer)
