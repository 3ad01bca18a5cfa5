"""The DeLighT model's configuration: one dataclass, its defaults and checks.

Field names are the authors' command-line flags (``delight_emb_out_dim`` is
``--delight-emb-out-dim``), so their published commands run unchanged. The
defaults are the authors' base architecture; the group caps, left at ``None``,
follow d_m (:func:`resolve`).
"""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from .scaling import block_schedule, dextra_plan, group_cap

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
            "help": "heads of every attention, each d_m/2 / heads wide, with the "
            "same parameters (the paper: 1, a single head; more is off the paper)"
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


def resolve(cfg: DeLighTConfig) -> DeLighTConfig:
    """Fill the group caps left at ``None`` and check the result.

    Raises ValueError, naming the flag, for any setting that cannot build.
    """
    _check_width(cfg)
    # derived only where a cap is missing: below d_m 32 the rule has no value,
    # and explicit caps must still build
    if cfg.delight_emb_max_groups is None:
        cfg.delight_emb_max_groups = group_cap(cfg.delight_emb_out_dim)
    if cfg.delight_enc_max_groups is None:
        cfg.delight_enc_max_groups = group_cap(cfg.delight_emb_out_dim)
    if cfg.delight_dec_max_groups is None:
        cfg.delight_dec_max_groups = group_cap(cfg.delight_emb_out_dim)
    _validate_resolved(cfg)
    return cfg


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_width(cfg: DeLighTConfig) -> None:
    d_m = cfg.delight_emb_out_dim
    if d_m <= 0 or d_m % 2:
        raise ValueError(
            f"--delight-emb-out-dim (d_m) is {d_m}; it must be a positive even "
            "number, since attention runs at d_m/2 (for example 128, 256 or 512)"
        )
    if cfg.delight_emb_map_dim <= 0:
        raise ValueError(
            f"--delight-emb-map-dim is {cfg.delight_emb_map_dim}; it must be positive "
            "(the paper uses 128)"
        )


def validate(cfg: DeLighTConfig) -> None:
    """Raise ValueError for a configuration that cannot build a DeLighT model
    (group caps already filled, as :func:`resolve` leaves them)."""
    _check_width(cfg)
    _validate_resolved(cfg)


def _validate_resolved(cfg: DeLighTConfig) -> None:
    """Everything but the width, which :func:`resolve` checks before the caps."""
    d_m = cfg.delight_emb_out_dim
    for name in (
        "dropout",
        "attention_dropout",
        "activation_dropout",
        "ffn_dropout",
        "pe_dropout",
        "delight_dropout",
        "delight_emb_dropout",
    ):
        p = getattr(cfg, name)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{_flag(name)} is {p}; a dropout must lie in [0, 1)")
    heads = cfg.delight_attention_heads
    if heads < 1 or (d_m // 2) % heads:
        divisors = [h for h in (1, 2, 4, 8) if (d_m // 2) % h == 0]
        raise ValueError(
            f"--delight-attention-heads is {heads}, which does not split the "
            f"attention's width d_m/2 = {d_m // 2} (--delight-emb-out-dim {d_m}); "
            f"use one of {divisors}"
        )
    sides = (side(cfg, "enc"), side(cfg, "dec"))
    for s in sides:
        _validate_side(s, d_m)
    if cfg.delight_emb_width_mult <= 0:
        raise ValueError(
            f"--delight-emb-width-mult is {cfg.delight_emb_width_mult}; "
            "it must be > 0 (the paper uses 2)"
        )
    if cfg.delight_emb_depth < 1:
        raise ValueError(
            f"--delight-emb-depth is {cfg.delight_emb_depth}; it must be >= 1"
        )
    # every DExTra must split into its groups: check each plan once
    _check_plan(
        d_m,
        "--delight-emb-max-groups",
        cfg.delight_emb_max_groups,
        cfg.delight_emb_map_dim,
        d_m,
        [(cfg.delight_emb_depth, cfg.delight_emb_width_mult)],
    )
    for s in sides:
        _check_plan(
            d_m,
            s.flag("max_groups"),
            s.max_groups,
            d_m,
            d_m // 2,
            [(b.depth, b.width_mult) for b in s.schedule()],
        )


def _validate_side(s: Side, d_m: int) -> None:
    lo, hi = s.min_depth, s.max_depth
    if lo < 1:
        raise ValueError(f"{s.flag('min_depth')} is {lo}; it must be >= 1")
    if lo > hi:
        raise ValueError(
            f"{s.flag('min_depth')} ({lo}) is larger than {s.flag('max_depth')} "
            f"({hi}); set min <= max (the paper uses 4 and 8)"
        )
    if s.scaling == "uniform" and lo != hi:
        raise ValueError(
            f"{s.flag('scaling')} uniform gives every block one depth, but "
            f"{s.flag('min_depth')} ({lo}) differs from {s.flag('max_depth')} "
            f"({hi}); set them equal, or use {s.flag('scaling')} block"
        )
    if s.layers < 1:
        raise ValueError(f"{s.flag('layers')} is {s.layers}; it must be >= 1")
    if s.width_mult <= 0:
        raise ValueError(
            f"{s.flag('width_mult')} is {s.width_mult}; it must be > 0 "
            "(the paper uses 2)"
        )
    if s.ffn_dim is not None:
        if s.ffn_dim < 1:
            raise ValueError(
                f"{s.flag('ffn_dim')} is {s.ffn_dim}; it must be >= 1, or left "
                f"unset for d_m / {s.flag('ffn_red')}"
            )
        return
    red = s.ffn_red
    if red < 1 or d_m % red:
        divisors = [r for r in (2, 4, 8, 16) if d_m % r == 0]
        raise ValueError(
            f"{s.flag('ffn_red')} is {red}, which does not divide d_m = {d_m} "
            f"(--delight-emb-out-dim); use one of {divisors or [1]}"
        )


def _check_plan(
    d_m: int, groups_flag: str, cap: int, d_in: int, d_out: int, blocks
) -> None:
    proj = d_m // 2
    if cap < 1:
        raise ValueError(f"{groups_flag} is {cap}; it must be >= 1")
    for depth, mult in blocks:
        plan = dextra_plan(d_in, proj, d_out, depth, mult, cap)
        for i, layer in enumerate(plan):
            # the mixer before layer i > 0 splits X (d_m/2 wide) into its groups
            widths = [layer.out_features, proj if i > 0 else layer.in_features]
            if any(w % layer.groups for w in widths):
                raise ValueError(
                    f"d_m = {d_m} (--delight-emb-out-dim) does not split into "
                    f"{layer.groups} GLT groups (capped by {groups_flag} = {cap}): "
                    f"d_m/2 = {proj} and every DExTra width must be divisible by "
                    f"the group count. Use a d_m that is a multiple of "
                    f"{2 * layer.groups}, or a smaller {groups_flag}"
                )
