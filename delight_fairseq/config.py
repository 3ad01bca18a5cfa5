"""The DeLighT model's configuration: one dataclass, its defaults and its
per-side view (the checks are in :mod:`delight_fairseq.validation`).

Field names are the authors' command-line flags (``delight_emb_out_dim`` is
``--delight-emb-out-dim``), so their published commands run unchanged. The
defaults are the authors' base architecture; the group caps, left at ``None``,
follow d_m (:func:`delight_fairseq.validation.resolve`, with the checks).
"""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from .scaling import block_schedule

SCALING_CHOICES = ChoiceEnum(["block", "uniform"])
DEFAULT_MAX_POSITIONS = 1024


@dataclass
class DeLighTConfig(FairseqDataclass):
    """Configuration of ``delight_transformer`` (docs/architecture.md sections 2-7)."""

    # embedding
    delight_emb_map_dim: int = field(
        default=128,
        metadata={"help": "width of the look-up table (and of the output softmax)"},
    )
    delight_emb_out_dim: int = field(
        default=128,
        metadata={"help": "model width d_m: output of the embedding and of each block"},
    )
    delight_emb_width_mult: float = field(
        default=2.0,
        metadata={
            "help": "width multiplier of the embedding DExTra, which expands to "
            "this times the map dim (presets: --delight-enc-width-mult)"
        },
    )
    delight_emb_max_groups: Optional[int] = field(
        default=None,
        metadata={
            "help": "group cap of the embedding DExTra (default: 2^ceil(log2(d_m/32)))"
        },
    )
    delight_emb_dropout: float = field(
        default=0.1,
        metadata={"help": "dropout on the scaled look-up, one mask over time"},
    )
    delight_emb_depth: int = field(
        default=4,
        metadata={
            "help": "GLT layers in the embedding DExTra "
            "(presets: --delight-dec-min-depth)"
        },
    )
    # encoder
    delight_enc_scaling: SCALING_CHOICES = field(  # type: ignore
        default="block",
        metadata={"help": "encoder scaling: block-wise or uniform depth and width"},
    )
    delight_enc_layers: int = field(
        default=8,
        metadata={
            "help": "number of encoder blocks (presets: --delight-enc-max-depth)"
        },
    )
    delight_enc_min_depth: int = field(
        default=4, metadata={"help": "DExTra depth of the first encoder block"}
    )
    delight_enc_max_depth: int = field(
        default=8, metadata={"help": "DExTra depth of the last encoder block"}
    )
    delight_enc_width_mult: float = field(
        default=2.0,
        metadata={"help": "DExTra width multiplier of the first encoder block"},
    )
    delight_enc_ffn_red: int = field(
        default=4,
        metadata={
            "help": "light FFN reduction: the encoder FFN is d_m -> d_m/r -> d_m"
        },
    )
    delight_enc_ffn_dim: Optional[int] = field(
        default=None,
        metadata={
            "help": "hidden width of the encoder FFN; when set it replaces "
            "d_m / --delight-enc-ffn-red and may exceed d_m (off the paper, "
            "whose light FFN only reduces)"
        },
    )
    delight_enc_max_groups: Optional[int] = field(
        default=None,
        metadata={"help": "group cap of encoder GLTs (default: 2^ceil(log2(d_m/32)))"},
    )
    # decoder
    delight_dec_scaling: SCALING_CHOICES = field(  # type: ignore
        default="block",
        metadata={"help": "decoder scaling: block-wise or uniform depth and width"},
    )
    delight_dec_layers: int = field(
        default=8,
        metadata={
            "help": "number of decoder blocks (presets: --delight-dec-max-depth)"
        },
    )
    delight_dec_min_depth: int = field(
        default=4, metadata={"help": "DExTra depth of the first decoder block"}
    )
    delight_dec_max_depth: int = field(
        default=8, metadata={"help": "DExTra depth of the last decoder block"}
    )
    delight_dec_width_mult: float = field(
        default=2.0,
        metadata={"help": "DExTra width multiplier of the first decoder block"},
    )
    delight_dec_ffn_red: int = field(
        default=4,
        metadata={
            "help": "light FFN reduction: the decoder FFN is d_m -> d_m/r -> d_m"
        },
    )
    delight_dec_ffn_dim: Optional[int] = field(
        default=None,
        metadata={
            "help": "hidden width of the decoder FFN; when set it replaces "
            "d_m / --delight-dec-ffn-red and may exceed d_m (off the paper, "
            "whose light FFN only reduces)"
        },
    )
    delight_dec_max_groups: Optional[int] = field(
        default=None,
        metadata={"help": "group cap of decoder GLTs (default: 2^ceil(log2(d_m/32)))"},
    )
    # everything else
    no_glt_shuffle: bool = field(
        default=False, metadata={"help": "disable the feature shuffle inside GLTs"}
    )
    delight_dropout: float = field(
        default=0.1, metadata={"help": "dropout after every layer of every DExTra"}
    )
    ffn_dropout: float = field(
        default=0.1, metadata={"help": "dropout after the light FFN's output layer"}
    )
    pe_dropout: float = field(
        default=0.1,
        metadata={"help": "dropout after adding positions, one mask over time"},
    )
    dropout: float = field(
        default=0.1, metadata={"help": "dropout after each attention's output"}
    )
    attention_dropout: float = field(
        default=0.1, metadata={"help": "dropout on the attention weights"}
    )
    activation_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout after the light FFN's activation"},
    )
    delight_attention_heads: int = field(
        default=1,
        metadata={
            "help": "heads of every attention, each d_m/2 / heads wide (the "
            "encoder-decoder one's: --delight-enc-dec-attn-dim / heads when set), "
            "with the same parameters (the paper: 1, a single head; more is off the "
            "paper)"
        },
    )
    delight_enc_dec_attn_dim: Optional[int] = field(
        default=None,
        metadata={
            "help": "width of each decoder block's encoder-decoder attention (its "
            "q, k and v); when set it replaces d_m/2 and may reach d_m or more "
            "(off the paper, whose attentions are all d_m/2 wide)"
        },
    )
    share_all_embeddings: bool = field(
        default=False,
        metadata={
            "help": "one look-up table for encoder, decoder and output "
            "(needs a joined dictionary)"
        },
    )
    share_decoder_input_output_embed: bool = field(
        default=False,
        metadata={"help": "use the decoder's look-up table as the output softmax"},
    )
    delight_authors_output_tying: bool = field(
        default=False,
        metadata={
            "help": "with --share-all-embeddings but without "
            "--share-decoder-input-output-embed, keep a separate output layer, as "
            "the authors' code does (by default --share-all-embeddings also ties "
            "the output layer, as fairseq's transformer does)"
        },
    )
    encoder_normalize_before: bool = field(
        default=False, metadata={"help": "pre-norm encoder blocks (default post-norm)"}
    )
    decoder_normalize_before: bool = field(
        default=False, metadata={"help": "pre-norm decoder blocks (default post-norm)"}
    )
    max_source_positions: int = field(
        default=II("task.max_source_positions"),
        metadata={"help": "longest source the model accepts (from the task)"},
    )
    max_target_positions: int = field(
        default=II("task.max_target_positions"),
        metadata={"help": "longest target the model accepts (from the task)"},
    )


def config_from(source: Any, kind: type = DeLighTConfig) -> DeLighTConfig:
    """A plain :class:`DeLighTConfig` (or its subclass ``kind``) from an argparse
    Namespace, a DictConfig or another config, with defaults for anything absent."""
    cfg = kind()
    for f in fields(kind):
        value = getattr(source, f.name, None)
        unresolved = isinstance(value, str) and value.startswith("${")
        if f.name.startswith("max_") and (value is None or unresolved):
            value = DEFAULT_MAX_POSITIONS
        if value is not None:
            setattr(cfg, f.name, value)
    return cfg


@dataclass(frozen=True)
class Side:
    """One stack's settings (encoder or decoder), read once from the flat flags.

    The flags stay flat (``--delight-enc-layers``), as the authors named them;
    the blocks read this view, so every use of a per-side field is a plain
    attribute that a search finds and a typo breaks at once.
    """

    name: str  # "enc" or "dec": the flags' infix
    scaling: str
    layers: int
    min_depth: int
    max_depth: int
    width_mult: float
    ffn_red: int
    max_groups: Optional[int]
    normalize_before: bool
    ffn_dim: Optional[int] = None  # replaces d_m // ffn_red when set

    def ffn_width(self, d_m: int) -> int:
        """The hidden width of this side's FFN."""
        return self.ffn_dim if self.ffn_dim is not None else d_m // self.ffn_red

    def flag(self, key: str) -> str:
        """The command-line flag of one of this side's fields, for messages."""
        return f"--delight-{self.name}-{key.replace('_', '-')}"

    def schedule(self):
        """Depth and width multiplier of each block (docs/architecture.md section 4)."""
        return block_schedule(
            self.layers, self.min_depth, self.max_depth, self.width_mult, self.scaling
        )


def side(cfg: DeLighTConfig, name: str) -> Side:
    """The encoder's (``enc``) or decoder's (``dec``) view of ``cfg``."""
    if name == "enc":
        return Side(
            "enc",
            str(cfg.delight_enc_scaling),
            cfg.delight_enc_layers,
            cfg.delight_enc_min_depth,
            cfg.delight_enc_max_depth,
            cfg.delight_enc_width_mult,
            cfg.delight_enc_ffn_red,
            cfg.delight_enc_max_groups,
            cfg.encoder_normalize_before,
            cfg.delight_enc_ffn_dim,
        )
    if name == "dec":
        return Side(
            "dec",
            str(cfg.delight_dec_scaling),
            cfg.delight_dec_layers,
            cfg.delight_dec_min_depth,
            cfg.delight_dec_max_depth,
            cfg.delight_dec_width_mult,
            cfg.delight_dec_ffn_red,
            cfg.delight_dec_max_groups,
            cfg.decoder_normalize_before,
            cfg.delight_dec_ffn_dim,
        )
    raise ValueError(f"side is {name!r}; use 'enc' or 'dec'")
