"""Dynamic int8 quantization of the inference engine (CPU).

    engine = Engine(model, tgt_dict, beam=5)   # or Engine(..., int8=True)
    quantize_engine(engine)                    # in place; returns the engine
    save_quantized(engine, "model.int8.pt")
    engine = load_quantized("model.int8.pt", beam=5, lenpen=1.0)

Every weight matrix becomes int8 with one float32 scale per output channel
(qlayers.py): the decoder's attention and FFN projections, DExTra's input
and output layers and its GLTs, the projection before the output layer, the
output layer, the encoder's the same, and the look-up tables (one scale per
row; a table tied to the output layer is quantized once for both). Biases,
LayerNorms and positions stay float32. The activations of the int8 products
are quantized dynamically, per call, by fbgemm's
``torch.ops.quantized.linear_dynamic``.

Choices, measured on the Multi30k DeLighT (d_m = 192, V = 6008; one
thread, process time, beam 5; 959 test sentences in batches of 6000 tokens
/ 24 sentences one at a time): the float32 engine 5.44 s / 0.55 s, the
int8 one with the defaults 3.43 s / 0.56 s.

* GLTs, ``glt="auto"`` (the default): below GLT_INT8_ROWS rows one
  float32 batched product over the dequantized int8 weights, from there on
  one dynamic int8 product per group. Per group always (``"int8"``): 3.43 s
  / 0.78 s; dequantized always (``"dequant"``): 3.92 s / 0.55 s. A block's
  three GLTs cross over at about 200 rows: 95 against 25 us at 5 rows, 677
  against 1225 us at 1280 (fbgemm's cost per call against the float32
  product's cost per row).
* The encoder, ``encoder="int8"`` (the default): 0.38 s of the 3.43 s,
  against 0.63 s with dequantized weights (``"dequant"``: 3.70 s in all);
  test BLEU as float32's either way.
* The decoder's embedding runs once over the vocabulary (the engine's
  token table): dequantized weights.
* The output layer and its log-softmax run step.OUTPUT_ROWS rows at a time,
  into a buffer reused across steps: 3.43 s against 3.62 s for whole
  batches (a slice's logits stay in cache, and come from memory the
  allocator keeps instead of freshly faulted pages).

Test BLEU (sacreBLEU, 1000 sentences) float32 -> int8, batches of 64
sentences (benchmarks/translate.py): 36.87 -> 36.86 for that model (lenpen 2),
37.51 -> 37.53 for the d_m = 128 one (lenpen 3).

A quantized engine owns its weights: it no longer reads the model, which is
left as it was. It runs in float32 on the CPU, whatever the model's dtype.
The search is the engine's; the scores move by the quantization's error,
and (the activations' scale being the call's) a sentence's result may
depend on the others in its batch. :func:`save_quantized` writes int8
tensors, float32 tensors and plain values only (``weights_only`` loads
them); the weights are packed again on loading.
"""

from typing import Dict, Optional

import torch
from torch import Tensor

from . import functional as fn
from . import qlayers as ql
from .engine import Engine
from .step import DecoderStep, reuse_buffer

FORMAT = "delight-fairseq-int8-engine"
VERSION = 1
#: quantize_engine's defaults (see the module's docstring)
GLT_MODE = "auto"
ENCODER_MODE = "int8"


class QuantizedStep(DecoderStep):
    """The decoder step over parts it owns (no model): int8 blocks, the
    embedding with its int8 table, the positions and the int8 output layer."""

    def __init__(
        self, weights, embed_tokens, embed_positions, padding_idx: int, head_dim: int
    ):
        self.decoder = None
        self.weights = weights
        self.n_blocks = len(weights.blocks)
        self.head_dim = head_dim
        self.padding_idx = padding_idx
        self.embed_tokens = embed_tokens
        self.embed_positions = embed_positions
        self.embedding_dim = embed_positions.dim
        self.kernel = None
        self.vocab_size = 0
        self._token_table = torch.empty(0)
        self._positions = torch.empty(0)
        self._logits = torch.empty(0)
        self._lprobs = torch.empty(0)

    def read_weights(self):
        return self.weights

    def reserve_logits(self, rows: int, vocab_size: int, like: Tensor) -> None:
        self.vocab_size = vocab_size
        self._lprobs = reuse_buffer(
            self._lprobs, rows, vocab_size, torch.float32, like.device
        )

    def sliced_output(self):
        """The int8 output layer: with the log-softmax, OUTPUT_ROWS rows at a
        time (:meth:`DecoderStep.log_probs_by_rows`, and in C++)."""
        return self.weights.output


def quantize_engine(
    engine: Engine,
    *,
    glt: str = GLT_MODE,
    encoder: str = ENCODER_MODE,
    reduce_range: Optional[bool] = None,
) -> Engine:
    """Quantize ``engine`` in place, and return it. ``glt``: "auto",
    "int8" or "dequant"; ``encoder``: "int8" or "dequant" (the module's
    docstring says what they do and why the defaults); ``reduce_range``:
    7-bit activations (default: only where the CPU needs them,
    qlayers.default_reduce_range). An engine already quantized is
    returned unchanged."""
    if getattr(engine, "int8", None):
        return engine
    if glt not in ql.GLT_MODES:
        raise ValueError(f"glt={glt!r}; expected one of {ql.GLT_MODES}")
    if encoder not in ql.MODES:
        raise ValueError(f"encoder={encoder!r}; expected one of {ql.MODES}")
    model = engine.model
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"int8 decoding runs on the CPU; the model is on {device}: move it "
            "to the CPU, or decode without int8"
        )
    rr = ql.default_reduce_range() if reduce_range is None else bool(reduce_range)
    tables: Dict = {}
    decoder = model.decoder
    with torch.no_grad():
        enc = fn.Encoder(model.encoder)
        enc_glt = glt if encoder == "int8" else encoder
        enc.embed = ql.quantize_embedding(enc.embed, encoder, enc_glt, rr, tables)
        for block in enc.blocks:
            ql.quantize_block(block, encoder, enc_glt, rr)
        weights = fn.DecoderWeights(decoder)
        for block in weights.blocks:
            ql.quantize_block(block, "int8", glt, rr)
        if weights.project_out is not None:
            proj = weights.project_out
            weights.project_out = ql.quantize_linear(proj.weight, proj.bias, "int8", rr)
        embed = fn.Embedding(decoder.embed_tokens)
        embed = ql.quantize_embedding(embed, "dequant", "dequant", rr, tables)
        matrix, bias = weights.output
        if decoder.output_projection is None:  # tied: the table's own int8
            q, scale = tables[id(matrix)]
            weights.output = ql.QLinear(q, scale, None, rr, shared=True)
        else:
            weights.output = ql.quantize_linear(matrix, bias, "int8", rr)
        positions = fn.Positions(decoder.embed_positions)
        for part in (enc, weights, embed, positions):
            ql.to_float32(part)
    head_dim = decoder.layers[0].self_attn.proj_dim
    step = QuantizedStep(weights, embed, positions, decoder.padding_idx, head_dim)
    engine.encode = enc
    engine.step = step
    engine.device = torch.device("cpu")
    engine.int8 = dict(glt=glt, encoder=encoder, reduce_range=rr)
    return engine


def _check_quantized(engine: Engine, what: str) -> None:
    if not getattr(engine, "int8", None):
        raise ValueError(f"{what}: the engine is not quantized (quantize_engine)")


class _Symbols:
    """What the search reads from the target dictionary."""

    def __init__(self, pad: int, unk: int, eos: int, size: int):
        self._ids, self._size = (pad, unk, eos), size

    def pad(self) -> int:
        return self._ids[0]

    def unk(self) -> int:
        return self._ids[1]

    def eos(self) -> int:
        return self._ids[2]

    def __len__(self) -> int:
        return self._size


def save_quantized(engine: Engine, path) -> None:
    """Write a quantized engine: its int8 weights, float32 scales, biases and
    norms, and what it needs to run (not the search options)."""
    _check_quantized(engine, "save_quantized")
    step = engine.step
    state = {
        "format": FORMAT,
        "version": VERSION,
        "int8": dict(engine.int8),
        "symbols": [engine.pad, engine.unk, engine.eos, engine.vocab_size],
        "max_positions": engine.max_positions,
        "padding_idx": step.padding_idx,
        "head_dim": step.head_dim,
    }
    for key, part in (
        ("encoder", engine.encode),
        ("decoder", step.weights),
        ("embed", step.embed_tokens),
        ("positions", step.embed_positions),
    ):
        state[key] = ql.to_state(part)
    torch.save(state, path)


def load_quantized(path, *, reduce_range: Optional[bool] = None, **options) -> Engine:
    """The engine :func:`save_quantized` wrote, with :class:`Engine`'s search
    ``options`` (beam, lenpen, max_len_a, max_len_b, min_len, ...); its
    ``model`` is None. ``reduce_range``: as saved, or 7-bit where this CPU
    needs it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a quantized DeLighT engine (save_quantized)")
    if state["version"] > VERSION:
        raise ValueError(
            f"{path} has format version {state['version']}; this code reads "
            f"versions up to {VERSION}"
        )
    saved = dict(state["int8"])
    if reduce_range is None:
        reduce_range = saved["reduce_range"] or ql.default_reduce_range()
    rr = bool(reduce_range)
    parts = {
        key: ql.from_state(state[key], rr)
        for key in ("encoder", "decoder", "embed", "positions")
    }
    step = QuantizedStep(
        parts["decoder"],
        parts["embed"],
        parts["positions"],
        state["padding_idx"],
        state["head_dim"],
    )
    engine = Engine.from_parts(
        parts["encoder"],
        step,
        state["max_positions"],
        _Symbols(*state["symbols"]),
        **options,
    )
    engine.int8 = dict(saved, reduce_range=rr)
    return engine


def weight_bytes(engine: Engine) -> Dict[str, int]:
    """The bytes a quantized engine's weights take in memory, by kind
    (qlayers.weight_bytes_of). Not counted: buffers (positions, the embedded
    vocabulary, the caches)."""
    _check_quantized(engine, "weight_bytes")
    return ql.weight_bytes_of(
        engine.encode, engine.step.weights, engine.step.embed_tokens
    )
