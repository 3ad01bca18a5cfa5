"""The DeLighT embedding: a narrow table, then a DExTra (docs/architecture.md
section 6).

With any of the activation checkpointing flags (``--checkpoint-activations``,
``--offload-activations``, ``--delight-checkpoint-dextra``; docs/architecture.md
section 11) the embedding's DExTra keeps only its input in training and runs
again in the backward pass, as the blocks' units do: over every token of the
batch it holds as many activations as a block's DExTra.
"""

import math

import torch
from fairseq.modules import PositionalEmbedding
from torch import Tensor, nn

from .config import DeLighTConfig
from .delight_layer import checkpoint_flags, checkpointed
from .dextra import DExTra


def shared_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per sequence, shared over all time steps.

    x: B x T x C. The mask is B x 1 x C, so a dropped feature stays dropped for
    the whole sentence (the recurrent dropout of Gal & Ghahramani).
    """
    if not training or p <= 0.0:
        return x
    keep = 1.0 - p
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(keep).div_(keep)
    return x * mask


def build_table(num_embeddings: int, dim: int, padding_idx: int) -> nn.Embedding:
    table = nn.Embedding(num_embeddings, dim, padding_idx=padding_idx)
    nn.init.normal_(table.weight, mean=0.0, std=dim**-0.5)
    nn.init.zeros_(table.weight[padding_idx])
    return table


def build_positions(cfg: DeLighTConfig, max_positions: int, padding_idx: int):
    """Sinusoidal positions (no parameters), added after the embedding DExTra."""
    return PositionalEmbedding(
        max_positions, cfg.delight_emb_out_dim, padding_idx, learned=False
    )


class DeLighTEmbedding(nn.Module):
    """Look-up table (V x map_dim) -> scale -> shared dropout -> DExTra to d_m.

    Only the table may be shared between encoder and decoder; each side keeps
    its own DExTra.
    """

    def __init__(self, cfg, table: nn.Embedding):
        super().__init__()
        self.table = table
        self.padding_idx = table.padding_idx
        self.embedding_dim = cfg.delight_emb_out_dim
        self.embed_scale = math.sqrt(table.embedding_dim)
        self.dropout = cfg.delight_emb_dropout
        self.dextra = DExTra(
            table.embedding_dim,
            cfg.delight_emb_out_dim // 2,
            cfg.delight_emb_out_dim,
            cfg.delight_emb_depth,
            cfg.delight_emb_width_mult,
            cfg.delight_emb_max_groups,
            dropout=cfg.delight_dropout,
            shuffle=not cfg.no_glt_shuffle,
        )
        offload, per_block, per_dextra = checkpoint_flags(cfg)
        self.offload_activations = offload
        self.checkpoint_dextra = per_block or per_dextra

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: B x T -> B x T x d_m."""
        x = self.table(tokens) * self.embed_scale
        x = shared_dropout(x, self.dropout, self.training)
        if not torch.jit.is_scripting():
            if self.checkpoint_dextra and self.training and torch.is_grad_enabled():
                return checkpointed(self.dextra, x, self.offload_activations)
        return self.dextra(x)
