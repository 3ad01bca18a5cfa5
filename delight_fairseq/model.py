"""The ``delight_transformer`` model and its named presets (``--arch``)."""

import functools
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.models import (
    FairseqEncoderDecoderModel,
    register_model,
    register_model_architecture,
)
from torch import Tensor

from . import fused, heap
from .catalog import BENCHMARKS, Benchmark
from .config import DeLighTConfig, config_from, side
from .decoder import DeLighTDecoder
from .embedding import DeLighTEmbedding, build_table
from .encoder import DeLighTEncoder
from .scaling import scaled_dropout
from .state_checks import check_state_dict
from .validation import resolve

logger = logging.getLogger(__name__)


@dataclass
class DeLighTModelConfig(DeLighTConfig):
    """The flags of ``delight_transformer``: the architecture (DeLighTConfig),
    activation checkpointing (docs/architecture.md section 11), which trades
    compute for memory in training, and ``--delight-compile`` (section 12),
    which trades a compilation for speed, ``--delight-fast-dropout``, which
    draws dropout masks faster on a CPU (section 13), and ``--delight-trim-heap``,
    which keeps the CPU heap from holding freed memory (section 14). None of them
    changes the model or its checkpoints; the presets and configs/ therefore leave
    them out."""

    checkpoint_activations: bool = field(
        default=False,
        metadata={
            "help": "activation checkpointing per block: keep only each encoder "
            "and decoder block's input (and each embedding DExTra's) in training "
            "and recompute the block in the backward pass (the least activation "
            "memory; 26-30 %% more time per token on a CPU); evaluation and "
            "decoding are unaffected"
        },
    )
    offload_activations: bool = field(
        default=False,
        metadata={
            "help": "--checkpoint-activations (which it sets), with each block's "
            "kept input moved to CPU memory until the backward pass (saves GPU "
            "memory; no effect with --cpu)"
        },
    )
    delight_checkpoint_dextra: bool = field(
        default=False,
        metadata={
            "help": "activation checkpointing per DExTra: recompute only each "
            "block's and embedding's DExTra unit (its deep, wide GLT stack) in the "
            "backward pass and keep attention and FFN activations; saves less "
            "memory than --checkpoint-activations but recomputes less. Not with "
            "--checkpoint-activations or --offload-activations"
        },
    )
    delight_compile: bool = field(
        default=False,
        metadata={
            "help": "compile each encoder and decoder block's DExTra unit with "
            "torch.compile at its first use, with dynamic batch and length (no "
            "recompiling per batch shape), fusing its many small kernels: for "
            "GPUs, where they are launch-bound (Triton kernels; on CPU Inductor "
            "writes C++, needs a C++ compiler and is slower than the fused CPU "
            "kernel). The same parameters and checkpoints; composes with the "
            "checkpointing flags; no effect under TorchScript; dropout draws other "
            "masks than eager"
        },
    )
    delight_fast_dropout: bool = field(
        default=False,
        metadata={
            "help": "CPU training: draw the dropout masks of the blocks, DExTra "
            "units, attention and FFN with the fused kernel (csrc/dropout.cpp), "
            "hashed from each element's index and a seed from torch's generator, "
            "on all cores, and computed again in the backward pass instead of "
            "kept (torch's CPU dropout draws on one core and keeps a float mask). "
            "The same distribution, other masks than torch's; no effect on GPU "
            "tensors, in evaluation, or with DELIGHT_FUSED_GLT=0"
        },
    )
    delight_trim_heap: bool = field(
        default=False,
        metadata={
            "help": "CPU training: hand the C heap's free pages back to the "
            "operating system (glibc's malloc_trim) in each training step, once "
            "the decoder's backward pass is over, so that the resident "
            "set follows the tensors alive at once more closely than the "
            "fragmented heap (lowers peak RSS; the freed pages fault in again, "
            "which costs time). No effect on GPU memory; does nothing without "
            "glibc"
        },
    )


def check_checkpointing(cfg: DeLighTModelConfig) -> None:
    """Raise ValueError, naming the flags, for checkpointing that cannot combine."""
    if cfg.delight_checkpoint_dextra:
        for name in ("checkpoint_activations", "offload_activations"):
            if getattr(cfg, name):
                flag = "--" + name.replace("_", "-")
                raise ValueError(
                    f"--delight-checkpoint-dextra and {flag} are both set; choose "
                    f"one: {flag} recomputes whole blocks (least memory), "
                    "--delight-checkpoint-dextra only their DExTra units (less "
                    "recomputation); nesting them would recompute DExTra twice"
                )
    if cfg.offload_activations:  # as in fairseq's transformer
        cfg.checkpoint_activations = True


def _checkpointing_note(cfg: DeLighTModelConfig) -> str:
    if cfg.checkpoint_activations:
        offload = ", inputs offloaded to CPU" if cfg.offload_activations else ""
        return f", activation checkpointing per block{offload}"
    if cfg.delight_checkpoint_dextra:
        return ", activation checkpointing per DExTra"
    return ""


@register_model("delight_transformer", dataclass=DeLighTModelConfig)
class DeLighTTransformerModel(FairseqEncoderDecoderModel):
    """DeLighT (Mehta et al., ICLR 2021): a transformer whose blocks are deep,
    light DExTra units with single-head attention and a reducing FFN, scaled
    block-wise from shallow and narrow to deep and wide."""

    def __init__(self, cfg: DeLighTModelConfig, encoder, decoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.trim_heap = bool(getattr(cfg, "delight_trim_heap", False))

    @classmethod
    def build_model(cls, cfg, task):
        cfg = resolve(config_from(cfg, DeLighTModelConfig))
        check_checkpointing(cfg)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        map_dim = cfg.delight_emb_map_dim

        if cfg.share_all_embeddings and src_dict != tgt_dict:
            raise ValueError(
                "--share-all-embeddings needs one joined dictionary for source and "
                "target: binarize with `fairseq-preprocess --joined-dictionary`, or "
                "drop --share-all-embeddings (an IWSLT-style preset shares only "
                "--share-decoder-input-output-embed)"
            )
        if cfg.share_all_embeddings and not cfg.delight_authors_output_tying:
            # fairseq's transformer rule: one table for everything
            cfg.share_decoder_input_output_embed = True

        src_table = build_table(len(src_dict), map_dim, src_dict.pad())
        tgt_table = (
            src_table
            if cfg.share_all_embeddings
            else build_table(len(tgt_dict), map_dim, tgt_dict.pad())
        )
        # only the table is shared: each side keeps its own embedding DExTra
        encoder = DeLighTEncoder(cfg, src_dict, DeLighTEmbedding(cfg, src_table))
        decoder = DeLighTDecoder(cfg, tgt_dict, DeLighTEmbedding(cfg, tgt_table))
        model = cls(cfg, encoder, decoder)
        fused.set_fast_dropout(model, cfg.delight_fast_dropout)
        logger.info(model.describe())
        return model

    def describe(self) -> str:
        """One line: width, blocks and their DExTra depths, parameters, and
        activation checkpointing and compilation if on."""
        cfg = self.cfg
        enc = [b.depth for b in side(cfg, "enc").schedule()]
        dec = [b.depth for b in side(cfg, "dec").schedule()]
        # depth as the paper counts it: N + 4 layers for a block with N GLTs
        depth = sum(d + 4 for d in enc + dec)
        n_params = sum(p.numel() for p in self.parameters())
        return (
            f"DeLighT: d_m={cfg.delight_emb_out_dim}, encoder {len(enc)} blocks "
            f"(DExTra depths {enc}), decoder {len(dec)} blocks (DExTra depths {dec}), "
            f"embedding DExTra depth {cfg.delight_emb_depth}, total depth {depth}, "
            f"parameters {n_params:,}{_checkpointing_note(cfg)}"
            + (", DExTra units compiled" if cfg.delight_compile else "")
            + (", fast CPU dropout" if cfg.delight_fast_dropout else "")
            + (", heap trimmed" if cfg.delight_trim_heap else "")
        )

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """fairseq's loading, after checking that the checkpoint fits (a clear
        error for another architecture, other dictionaries or other flags)."""
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(
            state_dict, strict, model_cfg=model_cfg, args=args
        )

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor,
        prev_output_tokens: Tensor,
        return_all_hiddens: bool = True,
        features_only: bool = False,
        alignment_layer: Optional[int] = None,
        alignment_heads: Optional[int] = None,
    ):
        encoder_out = self.encoder(
            src_tokens, src_lengths=src_lengths, return_all_hiddens=return_all_hiddens
        )
        if not torch.jit.is_scripting():
            if self.trim_heap and self.training and torch.is_grad_enabled():
                # trim once the decoder's backward pass is over
                heap.trim_after_backward(encoder_out["encoder_out"][0])
        return self.decoder(
            prev_output_tokens,
            encoder_out=encoder_out,
            features_only=features_only,
            alignment_layer=alignment_layer,
            alignment_heads=alignment_heads,
            src_lengths=src_lengths,
            return_all_hiddens=return_all_hiddens,
        )


# ---------------------------------------------------------------------------
# Presets. Each states only what differs, then falls through to the base.
# Architecture functions run more than once (at parsing and at build), so
# they only fill what is unset.


def _default(args, name: str, value) -> None:
    if getattr(args, name, None) is None:
        setattr(args, name, value)


@register_model_architecture("delight_transformer", "delight")
def base_architecture(args):
    """The authors' base: d_m 128, depths 4 -> 8, width multiplier 2."""
    defaults = DeLighTConfig()
    for name in DeLighTConfig.__dataclass_fields__:
        value = getattr(defaults, name)
        if isinstance(value, str) and value.startswith("${"):
            continue  # positions come from the task
        _default(args, name, value)


def preset_dropouts(benchmark: Benchmark, d_m: int) -> dict:
    """Dropout values of a benchmark's preset at width d_m."""

    def value(rule) -> float:
        if rule is None:
            return 0.0
        return scaled_dropout(rule.base, rule.reference, d_m, rule.cap)

    rules = benchmark.dropouts
    dropout = value(rules.dropout)
    return {
        "dropout": dropout,
        "ffn_dropout": dropout,
        "attention_dropout": value(rules.attention),
        "delight_dropout": value(rules.delight),
    }


def benchmark_preset(args, benchmark: Benchmark) -> None:
    """A benchmark's preset (catalog.py): blocks = max depth unless the record
    says otherwise, the embedding DExTra as deep as the decoder's first block,
    dropouts by width, the record's embedding sharing."""
    _default(args, "delight_emb_out_dim", benchmark.default_d_m)
    min_depth, max_depth = benchmark.depths
    for layers, lo, hi, width_mult in (
        ("delight_enc_layers", "delight_enc_min_depth", "delight_enc_max_depth",
         "delight_enc_width_mult"),
        ("delight_dec_layers", "delight_dec_min_depth", "delight_dec_max_depth",
         "delight_dec_width_mult"),
    ):  # fmt: skip
        _default(args, lo, min_depth)
        _default(args, hi, max_depth)
        _default(args, layers, benchmark.blocks or getattr(args, hi))
        _default(args, width_mult, 2.0)
    _default(args, "delight_emb_depth", args.delight_dec_min_depth)
    _default(args, "delight_emb_width_mult", args.delight_enc_width_mult)
    for name, value in preset_dropouts(benchmark, args.delight_emb_out_dim).items():
        _default(args, name, value)
    _default(args, "delight_emb_dropout", 0.1)
    _default(args, "pe_dropout", 0.1)
    _default(args, "activation_dropout", 0.0)
    _default(args, "share_all_embeddings", benchmark.share_all)
    _default(args, "share_decoder_input_output_embed", True)
    base_architecture(args)


def _register_presets() -> None:
    for benchmark in BENCHMARKS.values():
        for arch in benchmark.archs:
            register_model_architecture("delight_transformer", arch)(
                functools.partial(benchmark_preset, benchmark=benchmark)
            )


_register_presets()
