"""A DeLighT model exported by ``delight-export``, run with NumPy.

The arithmetic is the engine's (``delight_fairseq/inference/functional.py``
and ``step.py``, docs/architecture.md sections 5-7; the parts are
:mod:`delight_lite.layers`), on float32 arrays (float64 for a float64 model):

* the encoder: token table + positions, then per block the DExTra, the
  self-attention (d_m/2 wide, optionally in heads, query scaled before the
  product, masked at padding), the light FFN, with residuals and LayerNorms
  after (post-norm) or before (pre-norm) each part; the final LayerNorm of a
  pre-norm stack;
* the decoder, one token per hypothesis and step (:class:`Decoder`), its
  self-attention keys and values in a cache that grows with the steps
  (:class:`Cache`), the encoder-decoder keys and values projected once per
  sentence and shared by its beams, the output layer and a float32
  log-softmax.

The products run on the BLAS NumPy was built with (OPENBLAS_NUM_THREADS or
``threadpoolctl`` set its threads). tests/test_lite.py holds the results
against fairseq's.
"""

import json
import zipfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from .layers import (
    OUTPUT_ROWS,
    Block,
    Linear,
    Norm,
    as_float32,
    attend,
    by_rows,
    heads_first,
    heads_last,
    log_softmax,
)

FORMAT = 1
CONFIG = "model.json"
WEIGHTS = "weights.npz"


class ModelError(ValueError):
    """The folder is not a model exported by delight-export."""


class Encoder:
    def __init__(self, spec, arrays, pad: int):
        self.tokens = arrays[spec["tokens"]]
        self.positions = arrays[spec["positions"]]
        self.blocks = [Block(s, arrays, False) for s in spec["blocks"]]
        self.final_norm = (
            None if spec["final_norm"] is None else Norm(spec["final_norm"], arrays)
        )
        self.max_positions = spec["max_positions"]
        self.pad = pad

    def __call__(self, src: np.ndarray):
        """src: B x S token ids, left-padded -> (B x S x d_m, B x S padding)."""
        padding = src == self.pad
        bsz, width = src.shape
        # real token j of a sentence (left padding) takes position row j
        index = np.cumsum(~padding, axis=1) - 1
        x = self.tokens[src] + np.where(
            padding[..., None], 0.0, self.positions[np.maximum(index, 0)]
        )
        mask = padding[:, None, None, :] if padding.any() else None
        d_m = x.shape[-1]
        for block in self.blocks:
            residual = x
            norm = block.self_attn_norm
            h = by_rows(block.self_qkv, x.reshape(-1, d_m))
            q, k, v = np.split(h.reshape(bsz, width, -1), 3, axis=-1)
            q = q * block.scaling
            heads = block.heads
            h = attend(
                heads_first(q, heads),
                heads_first(k, heads),
                heads_first(v, heads),
                mask,
            )
            x = norm.post(block.self_out(heads_last(h)), residual)
            x = by_rows(block.ffn_part, x.reshape(-1, d_m)).reshape(bsz, width, d_m)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, padding


class Cache:
    """Self-attention keys and values, one array per block (rows x 2 x heads
    x steps x head_dim/heads): each head's keys over the steps so far are a
    plain matrix, which the products read in place.

    The arrays hold the steps decoded so far and grow STEPS steps at a time
    (:meth:`room`), for the rows still searched: in arrays sized for
    ``max_len`` steps, each head's steps of each row span a few pages, and the
    first steps already touch one of each. A reorder copies one block at a
    time in place, so the peak is the cache and one block's copy, not two
    caches."""

    STEPS = 16

    def __init__(self, rows: int, blocks: int, heads: int, head_dim: int, dtype):
        #: the rows the search may still use (it lowers this as sentences
        #: finish, and growing keeps only these)
        self.rows = rows
        shape = (rows, 2, heads, 0, head_dim // heads)
        self.blocks = [np.empty(shape, dtype)] * blocks

    def room(self, step: int, filled: int) -> None:
        """Make room for ``step`` (the first ``filled`` steps are kept)."""
        rows = self.rows
        for i, kv in enumerate(self.blocks):
            if step < kv.shape[3]:
                return
            _, two, heads, _, d = kv.shape
            grown = np.empty((rows, two, heads, step + self.STEPS, d), kv.dtype)
            grown[..., :filled, :] = kv[:rows, ..., :filled, :]
            self.blocks[i] = grown

    def reorder(self, order: np.ndarray, filled: int) -> None:
        """Row i becomes row ``order[i]`` (the first ``filled`` steps)."""
        for kv in self.blocks:
            kv[: order.size, ..., :filled, :] = kv[order, ..., :filled, :]


class EncoderState:
    """Per decoder block the encoder's keys and values (sentences x heads x S
    x width/heads) and the padding mask (sentences x 1 x 1 x S, or None)."""

    def __init__(self, keys: List[np.ndarray], values: List[np.ndarray], padding):
        self.keys, self.values, self.padding = keys, values, padding
        self.mask = padding[:, None, None, :] if padding.any() else None

    def keep(self, sentences: np.ndarray) -> None:
        """Keep only these sentences (indices into the current ones), one
        array at a time: the peak is the state and one array's copy."""
        for arrays in (self.keys, self.values):
            for i, a in enumerate(arrays):
                arrays[i] = a[sentences]
        self.padding = self.padding[sentences]
        self.mask = self.mask[sentences] if self.mask is not None else None


class Decoder:
    def __init__(self, spec, arrays):
        self.tokens = arrays[spec["tokens"]]
        self.positions = arrays[spec["positions"]]
        self.blocks = [Block(s, arrays, True) for s in spec["blocks"]]
        self.head_dim = spec["head_dim"]
        self.heads = self.blocks[0].heads  # every block's (--delight-attention-heads)
        self.final_norm = (
            None if spec["final_norm"] is None else Norm(spec["final_norm"], arrays)
        )
        self.project_out = (
            None if spec["project_out"] is None else Linear(spec["project_out"], arrays)
        )
        self.output = arrays[spec["output"]]
        self.max_positions = spec["max_positions"]

    def encoder_state(self, enc: np.ndarray, padding: np.ndarray) -> EncoderState:
        """enc: B x S x d_m."""
        keys, values = [], []
        for block in self.blocks:
            k, v = np.split(block.kv(enc), 2, axis=-1)
            keys.append(np.ascontiguousarray(heads_first(k, block.heads)))
            values.append(np.ascontiguousarray(heads_first(v, block.heads)))
        return EncoderState(keys, values, padding)

    def __call__(self, tokens, step: int, cache: Cache, enc: EncoderState):
        """tokens: the last token of each hypothesis (rows, beams of a
        sentence adjacent) -> rows x V float32 log-probabilities."""
        rows = tokens.size
        n_sent = enc.padding.shape[0]
        dh = self.head_dim
        x = self.tokens[tokens] + self.positions[step]
        cache.room(step, step)
        for i, block in enumerate(self.blocks):
            heads = block.heads
            residual = x
            norm = block.self_attn_norm
            qkv = block.self_qkv(x)
            q = qkv[:, :dh] * block.scaling
            kv = cache.blocks[i]
            kv[:rows, :, :, step] = qkv[:, dh:].reshape(rows, 2, heads, -1)
            keys = kv[:rows, 0, :, : step + 1]  # rows x heads x steps x dh/heads
            values = kv[:rows, 1, :, : step + 1]
            h = attend(q.reshape(rows, heads, 1, -1), keys, values, None)
            # rows x heads x 1 x dh/heads: the heads side by side
            x = norm.post(block.self_out(h.reshape(rows, dh)), residual)

            residual = x
            norm = block.encoder_attn_norm
            q = block.q(norm.pre(x)) * block.encoder_scaling
            q = heads_first(q.reshape(n_sent, rows // n_sent, -1), heads)
            h = attend(q, enc.keys[i], enc.values[i], enc.mask)
            x = norm.post(block.encoder_out(heads_last(h).reshape(rows, -1)), residual)

            x = block.ffn_part(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        return self.log_probs(x)

    def log_probs(self, x: np.ndarray) -> np.ndarray:
        """rows x map_dim -> rows x V: the output layer and a float32
        log-softmax (:func:`as_float32`), OUTPUT_ROWS rows at a time (the
        temporaries stay small)."""
        out = np.empty((x.shape[0], self.output.shape[1]), np.float32)
        for start in range(0, x.shape[0], OUTPUT_ROWS):
            rows = slice(start, start + OUTPUT_ROWS)
            if x.dtype == np.float32:
                log_softmax(np.matmul(x[rows], self.output, out=out[rows]))
            else:
                out[rows] = as_float32(log_softmax(x[rows] @ self.output))
        return out


def read_config(folder: Path) -> dict:
    """The exported folder's ``model.json`` (structure, symbols, text
    settings), checked to be an export this package reads."""
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        raise ModelError(
            f"{folder} holds no exported model ({CONFIG} and {WEIGHTS}): "
            "make one with delight-export CHECKPOINT --out FOLDER"
        )
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise ModelError(
            f"{folder / CONFIG} is format {config.get('format')}; this delight_lite "
            f"reads format {FORMAT}: export the checkpoint again"
        )
    return config


class Model:
    """An exported model: :attr:`encoder`, :attr:`decoder`, the dictionaries'
    symbols (:attr:`source`, :attr:`target`) and the text settings."""

    def __init__(self, folder, config: Optional[dict] = None):
        """``config``: :func:`read_config`'s, where the caller has it."""
        folder = Path(folder)
        self.folder = folder
        config = read_config(folder) if config is None else config
        try:
            with np.load(folder / WEIGHTS) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ModelError(
                f"{folder / WEIGHTS} cannot be read ({e}): export the checkpoint again"
            ) from None
        self._arrays = arrays
        self.source, self.target = config["source"], config["target"]
        self.text = config.get("text") or {}
        self.encoder = Encoder(config["encoder"], arrays, self.source["pad"])
        self.decoder = Decoder(config["decoder"], arrays)

    def weight_bytes(self) -> int:
        """The exported arrays' size in memory."""
        return sum(a.nbytes for a in self._arrays.values())
