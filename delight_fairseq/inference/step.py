"""One incremental DeLighT decoder step over preallocated caches.

The step runs the decoder's arithmetic in eval mode over the model's own
weights (read into plain references by :mod:`.functional`, so that the
hundreds of small operations of a step skip ``nn.Module``'s per-call
costs), with fairseq's dict-based incremental state replaced by:

* self-attention keys and values of every block in one preallocated tensor,
  rows x steps x blocks x 2 x d/2 (:class:`KeyValueCache`); a step writes its
  column and attends over the columns so far, through a table of the rows
  each hypothesis descends from (moving beams reorders the table, not the
  keys and values);
* encoder-decoder keys and values projected once per sentence
  (:meth:`DecoderStep.encoder_state`) and shared by the sentence's beams: no
  copies per beam, nothing to reorder.

The arithmetic is the model's (docs/architecture.md sections 5-7): scaled
look-up -> embedding DExTra -> + sinusoidal position (both through the
decoder's modules; the embedding of the whole vocabulary is computed once);
per block the DExTra (on the fused GLT kernel where the modules use it),
single-head attention d_m/2 wide (the encoder-decoder one as wide as
``--delight-enc-dec-attn-dim`` when set; both split into the heads of
``--delight-attention-heads`` when set) with its query scaled before the
product and its softmax in float32, the light FFN, residuals and LayerNorms after
(post-norm) or before (pre-norm) each part; then the final LayerNorm of a
pre-norm stack, the projection to the table's width and the tied or untied
output layer. Dropout is off, as in eval mode.

Where the fused extension is built, the blocks and what follows them run in
C++ (:mod:`.native`, csrc/decoder_blocks.h): the same operations as
:meth:`DecoderStep.__call__` and :meth:`DecoderStep.finish`, in the same
order, without the interpreter between them and without holding its lock
(engines in threads, pool.py, run their steps side by side). Both attend in
one pass over the keys where they lie (csrc/attend_one.cpp).
"""

from collections import namedtuple
from typing import List, Optional

import torch
from torch import Tensor

from ..attention import merge_heads, split_heads
from . import matmul, native
from .functional import DecoderWeights, Linear, attend, attend_heads, glt_kernel

#: a weight and a bias, as functional.Linear reads them from a module
Parts = namedtuple("Parts", "weight bias")

#: Above this many elements (V x d_m) the decoder's token embeddings are
#: computed per step instead of once for the whole vocabulary.
MAX_TOKEN_TABLE = 1 << 26
#: rows of logits computed at a time where the output layer is not one
#: torch.mm into a reused buffer (on oneDNN, or int8): each slice comes from
#: memory the allocator keeps and is still in cache for the log-softmax
OUTPUT_ROWS = 128


class KeyValueCache:
    """Self-attention keys and values of all decoder blocks.

    One buffer, rows x steps x blocks x 2 x head_dim (:attr:`kv`): at step t
    the hypothesis in row r writes its keys and values at [r, t]. When the
    beams move (:meth:`reorder`), none of it is copied: :attr:`origin`, rows
    x steps of int64, names the row of ``kv`` that holds hypothesis r's step
    t, and only it is reordered (one integer per entry instead of blocks x 2
    x head_dim floats; the copy of the filled cache at every step cost about
    3.5 % of beam-5 decoding on Multi30k, more on longer sentences). A column is written
    once, at its step, so the rows it names stay valid; where no reorder has
    written yet, row r names itself. The buffer outlives a batch (:meth:`reset`
    reuses it when big enough).
    """

    def __init__(self, n_blocks: int, head_dim: int):
        self.n_blocks = n_blocks
        self.head_dim = head_dim
        self._flat = torch.empty(0)
        self.kv = torch.empty(0)
        self.origin = torch.empty(0, dtype=torch.long)
        #: a table of origin's shape that reorders write into, then swap in;
        #: it starts as origin does, each row naming itself, since a step's
        #: new column is not written by a reorder
        self.spare = self.origin

    def reset(self, rows: int, steps: int, like: Tensor) -> None:
        """Room for ``rows`` hypotheses of up to ``steps`` steps, of ``like``'s
        dtype and device."""
        shape = (rows, steps, self.n_blocks, 2, self.head_dim)
        numel = rows * steps * self.n_blocks * 2 * self.head_dim
        flat = self._flat
        if (
            flat.numel() < numel
            or flat.dtype != like.dtype
            or flat.device != like.device
        ):
            flat = self._flat = like.new_empty(numel)
        self.kv = flat[:numel].view(shape)
        itself = torch.arange(rows, device=like.device).unsqueeze(1).expand(rows, steps)
        self.origin = itself.clone()
        self.spare = itself.clone()

    def reorder(self, order: Tensor, filled: int) -> None:
        """Hypothesis i continues hypothesis ``order[i]``, for the first
        ``filled`` steps."""
        rows = order.numel()
        torch.index_select(
            self.origin[:, :filled], 0, order, out=self.spare[:rows, :filled]
        )
        self.origin, self.spare = self.spare, self.origin

    def past(self, block: int, step: int, rows: int):
        """Keys and values of block ``block`` of the first ``rows``
        hypotheses over steps 0 .. ``step``, gathered (rows x step + 1 x
        head_dim each): what the fused attention reads in place."""
        origin = self.origin[:rows, : step + 1]
        columns = torch.arange(step + 1, device=origin.device)
        past = self.kv[origin, columns, block]
        return past[:, :, 0], past[:, :, 1]


class EncoderState:
    """Per block, the encoder output's keys and values, already split into
    the block's heads (sentences x heads x S x the encoder-decoder
    attention's width / heads; the width is d_m/2 unless set otherwise),
    and the source padding mask (sentences x 1 x S, True at padding)."""

    def __init__(self, keys: List[Tensor], values: List[Tensor], padding: Tensor):
        self.keys = keys
        self.values = values
        self.padding = padding
        self.any_padding = bool(padding.any())
        self._per_head = {1: padding}

    def select(self, sentences: Tensor) -> "EncoderState":
        """Keep only these sentences (indices into the current ones)."""
        return EncoderState(
            [k.index_select(0, sentences) for k in self.keys],
            [v.index_select(0, sentences) for v in self.values],
            self.padding.index_select(0, sentences),
        )

    def mask(self, heads: int) -> Optional[Tensor]:
        """The padding mask repeated for each head, (sentences x heads) x 1
        x S, or None without padding."""
        if not self.any_padding:
            return None
        if heads not in self._per_head:
            self._per_head[heads] = self.padding.repeat_interleave(heads, dim=0)
        return self._per_head[heads]


class DecoderStep:
    """The decoder of a DeLighT model, one token per hypothesis and step."""

    #: run the blocks in C++ where native.blocks applies (False: the Python
    #: loop of __call__, which the C++ one follows operation by operation)
    use_native = True
    #: attend with the fused kernel (csrc/attend_one.cpp) where the fused
    #: extension is loaded (False: ATen's operations, in the Python loop only)
    fused_attention = True
    _native = None  # this batch's C++ blocks, or None

    def __init__(self, model):
        decoder = model.decoder
        self.decoder = decoder
        if len(decoder.layers) == 0:
            raise ValueError("the decoder has no blocks")
        self.n_blocks = len(decoder.layers)
        self.head_dim = decoder.layers[0].self_attn.proj_dim
        self.padding_idx = decoder.padding_idx
        # the embedding and the positions, called on B x T tokens
        self.embed_tokens = decoder.embed_tokens
        self.embed_positions = decoder.embed_positions
        self.embedding_dim = decoder.embed_tokens.embedding_dim
        self.weights = DecoderWeights(decoder)
        self.kernel = None
        # the output layer on oneDNN (matmul.py) for this batch, else None
        self._onednn_output: Optional[matmul.PackedLinear] = None
        self.vocab_size = 0
        self._token_table: Tensor = torch.empty(0)
        self._positions: Tensor = torch.empty(0)
        self._logits: Tensor = torch.empty(0)
        self._lprobs: Tensor = torch.empty(0)

    # -- per batch ------------------------------------------------------------

    def prepare(
        self, vocab_size: int, steps: int, rows: int, like: Tensor, onednn: bool = False
    ) -> None:
        """Ready the step for a batch of up to ``rows`` hypotheses and
        ``steps`` steps, on ``like``'s dtype and device: read the weights
        (where they are now; with ``onednn``, the float32 products go to
        oneDNN), choose the GLT kernel as the modules would, and
        build what does not depend on the sentence: the sinusoidal positions,
        room for the logits, and, once, the embedding of every target token
        (when V x d_m is at most MAX_TOKEN_TABLE)."""
        self.weights = self.read_weights()
        self._onednn_output = None
        if onednn:
            matmul.use_onednn(self.weights)
            weight, bias = self.weights.output  # bias-free
            self._onednn_output = matmul.PackedLinear(Parts(weight, bias))
        self.kernel = glt_kernel(like)
        self._native = None
        if self.use_native and self.fused_attention:
            output, output_rows = self.native_output()
            self._native = native.blocks(
                self.weights, self.head_dim, self.kernel, output, output_rows
            )
        self.reserve_logits(rows, vocab_size, like)
        table = self._token_table
        d_m = self.embedding_dim
        if vocab_size * d_m <= MAX_TOKEN_TABLE and (
            table.size(0) != vocab_size
            or table.dtype != like.dtype
            or table.device != like.device
        ):
            # the embedding (look-up, scale, DExTra) acts per token: run it
            # once over the vocabulary, and each step is a row gather
            ids = torch.arange(vocab_size, device=like.device)
            self._token_table = self.embed_tokens(ids.unsqueeze(0))[0]
        positions = self._positions
        if (
            positions.size(0) < steps
            or positions.dtype != like.dtype
            or positions.device != like.device
        ):
            # positions as the decoder's module gives them to a target of
            # ``steps`` real tokens: padding_idx + 1, padding_idx + 2, ...
            probe = torch.full(
                (1, steps), self.padding_idx + 1, dtype=torch.long, device=like.device
            )
            self._positions = self.embed_positions(probe)[0]

    def sliced_output(self):
        """The output layer where it runs OUTPUT_ROWS rows at a time (on
        oneDNN; the int8 engine's), or None: one torch.mm into the logits
        buffer (:meth:`output_layer`)."""
        return self._onednn_output

    def native_output(self):
        """The output layer as the C++ head runs it (native.blocks): the
        product, and the rows it takes at a time (0: one product into the
        logits buffer), as :meth:`log_probs` does."""
        sliced = self.sliced_output()
        if sliced is not None:
            return sliced, OUTPUT_ROWS
        return Linear(Parts(*self.weights.output)), 0

    def native_parts(self):
        """What the C++ search (csrc/search.cpp) needs to run this batch's
        steps: the extension, the C++ blocks and head, the table of target
        embeddings, the positions and the logits and log-probs buffers; None
        where a step does not run in C++ (no C++ blocks, or no token table)."""
        if self._native is None or not self._token_table.numel():
            return None
        return (
            self.kernel, self._native, self._token_table, self._positions,
            self._logits, self._lprobs,
        )  # fmt: skip

    def reserve_logits(self, rows: int, vocab_size: int, like: Tensor) -> None:
        """Room for rows x V logits (:meth:`output_layer` writes there) and
        their float32 log-probabilities (:meth:`log_probs`)."""
        self.vocab_size = vocab_size
        self._logits = reuse_buffer(
            self._logits, rows, vocab_size, like.dtype, like.device
        )
        self._lprobs = reuse_buffer(
            self._lprobs, rows, vocab_size, torch.float32, like.device
        )

    def read_weights(self) -> DecoderWeights:
        """The decoder's weights as they are now (read again per batch)."""
        return DecoderWeights(self.decoder)

    def encoder_state(self, encoder_out: Tensor, padding_mask: Tensor) -> EncoderState:
        """encoder_out: S x B x d_m; padding_mask: B x S. Projects every
        block's encoder-decoder keys and values once, and splits them into
        the block's heads once (not at every step)."""
        enc = encoder_out.transpose(0, 1)  # B x S x d_m
        bsz, length = enc.shape[:2]
        keys, values = [], []
        for block in self.weights.blocks:
            for part, out in zip(block.kv(enc).chunk(2, dim=-1), (keys, values)):
                part = part.reshape(bsz, length, block.heads, -1).transpose(1, 2)
                out.append(part.contiguous())
        return EncoderState(keys, values, padding_mask.unsqueeze(1))

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens: rows -> rows x d_m, without positions."""
        if self._token_table.numel():
            return self._token_table.index_select(0, tokens)
        return self.embed_tokens(tokens.unsqueeze(1)).squeeze(1)

    # -- the step -------------------------------------------------------------

    def __call__(
        self, tokens: Tensor, step: int, cache: KeyValueCache, enc: EncoderState
    ) -> Tensor:
        """tokens: the last token of each hypothesis (rows, a multiple of the
        sentences in ``enc``, beams of one sentence adjacent). Writes this
        step's keys and values into ``cache.kv[:rows, step]`` and returns
        rows x V log-probabilities in float32."""
        rows = tokens.numel()
        n_sent = enc.padding.size(0)
        dh = self.head_dim
        kernel = self.kernel
        attend_one = (
            kernel.attend_one if kernel is not None and self.fused_attention else None
        )
        weights = self.weights
        # select(), not [step]: torch.compile would specialize on each step
        x = self.embed(tokens) + self._positions.select(0, step)
        padding = enc.padding.squeeze(1) if enc.any_padding else None
        if self._native is not None:
            return self._native.step(
                x, step, cache.kv, cache.origin, enc.keys, enc.values, padding,
                self._logits, self._lprobs,
            )  # fmt: skip
        kv, origin = cache.kv, cache.origin[:rows, : step + 1]
        for i, block in enumerate(weights.blocks):
            # DExTra, then causal single-head self-attention over the cache
            residual = x
            norm = block.self_attn_norm
            qkv = block.qkv(block.dextra(norm.pre(x), kernel))
            q = qkv[:, :dh] * block.self_scaling
            kv[:rows].select(1, step).select(1, i).copy_(qkv[:, dh:].view(rows, 2, dh))
            heads = block.heads
            if attend_one is not None:  # over the cache in place
                keys, values = (
                    kv[:, : step + 1, i, j].unflatten(2, (heads, -1)).transpose(1, 2)
                    for j in (0, 1)
                )
                q = q.view(rows, 1, heads, -1)
                h = attend_one(q, keys, values, None, origin)
            else:
                keys, values = cache.past(i, step, rows)
                h = attend(q.unsqueeze(1), keys, values, heads, None)
            x = norm.post(block.self_out(h.view(rows, dh)), residual)

            # encoder-decoder attention: the beams of a sentence share its
            # keys and values
            residual = x
            norm = block.encoder_attn_norm
            q = block.q(norm.pre(x)) * block.encoder_scaling
            # its width is d_m/2, or --delight-enc-dec-attn-dim's
            keys, values = enc.keys[i], enc.values[i]
            if attend_one is not None:
                q = q.view(n_sent, rows // n_sent, heads, -1)
                h = attend_one(q, keys, values, padding, None).view(rows, -1)
            else:
                q = split_heads(q.view(n_sent, rows // n_sent, -1), heads)
                h = attend_heads(
                    q, keys.flatten(0, 1), values.flatten(0, 1), enc.mask(heads)
                )
                h = merge_heads(h, heads).reshape(rows, -1)
            x = norm.post(block.encoder_out(h), residual)

            # the light FFN
            norm = block.ffn_norm
            x = norm.post(block.ffn(norm.pre(x)), x)
        return self.finish(x)

    def finish(self, x: Tensor) -> Tensor:
        """After the blocks: the final LayerNorm (pre-norm), the projection to
        the table's width, and the log-probabilities."""
        weights = self.weights
        if weights.final_norm is not None:
            x = weights.final_norm(x)
        if weights.project_out is not None:
            x = weights.project_out(x)
        return self.log_probs(x)

    def log_probs(self, x: Tensor) -> Tensor:
        """rows x map_dim -> rows x V float32 log-probabilities, into a
        buffer reused across steps (a fresh tensor of this size is new pages
        of memory at every step, which the kernel writes for the first time)."""
        sliced = self.sliced_output()
        if sliced is not None:
            return self.log_probs_by_rows(x, sliced)
        logits = self.output_layer(x)
        rows, vocab = logits.shape
        out = self._lprobs = reuse_buffer(
            self._lprobs, rows, vocab, torch.float32, x.device
        )
        return torch.log_softmax(logits, -1, dtype=torch.float32, out=out[:rows])

    def log_probs_by_rows(self, x: Tensor, output) -> Tensor:
        """rows x map_dim -> rows x V float32 log-probabilities: the output
        layer ``output`` and the log-softmax, OUTPUT_ROWS rows at a time, into
        the reused buffer."""
        rows = x.size(0)
        self._lprobs = reuse_buffer(
            self._lprobs, rows, self.vocab_size, torch.float32, x.device
        )
        out = self._lprobs[:rows]
        for start in range(0, rows, OUTPUT_ROWS):
            stop = min(start + OUTPUT_ROWS, rows)
            torch.log_softmax(
                output(x[start:stop]), -1, dtype=torch.float32, out=out[start:stop]
            )
        return out

    def output_layer(self, x: Tensor) -> Tensor:
        """rows x map_dim -> rows x V, into a buffer reused across steps."""
        weight, bias = self.weights.output
        rows, vocab = x.size(0), weight.size(0)
        out = self._logits = reuse_buffer(self._logits, rows, vocab, x.dtype, x.device)
        if bias is not None:
            return torch.addmm(bias, x, weight.t(), out=out[:rows])
        return torch.mm(x, weight.t(), out=out[:rows])


def reuse_buffer(buf: Tensor, rows: int, cols: int, dtype, device) -> Tensor:
    """``buf`` if it holds rows x cols of this dtype and device, else a new
    one."""
    if (
        buf.dim() != 2
        or buf.size(0) < rows
        or buf.size(1) != cols
        or buf.dtype != dtype
        or buf.device != device
    ):
        return torch.empty(rows, cols, dtype=dtype, device=device)
    return buf
