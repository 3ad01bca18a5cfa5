"""Export a trained DeLighT model for :mod:`delight_lite`, which translates
with NumPy alone (no torch, no fairseq: a process of about a tenth of the
memory).

    delight-export CHECKPOINT --data DATA_BIN --out MODEL_DIR
    delight-lite MODEL_DIR < source.txt > translations.txt

The folder holds ``model.json`` (the structure, the search's special symbols,
the dictionaries' symbols) and ``weights.npz`` (float32 arrays), plus the
subword model and ``prep.json`` the data-bin had, so that it translates raw
text on its own. The weights are those of the engine's plans
(:mod:`.functional`): per block, the DExTra's layers, the attentions'
projections (stored input-major, as NumPy multiplies ``x @ w``), the FFN and
the LayerNorms. The embeddings act per token (look-up, scale, DExTra), so the
export runs them once over each vocabulary and stores the V x d_m tables; the
sinusoidal positions are stored as the rows the model adds to the first,
second, ... real token.
"""

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from delight_lite.model import CONFIG, FORMAT, WEIGHTS
from delight_lite.text import BPE_CODES, PREP_STAMP, SPM_MODEL

from . import functional as fn

logger = logging.getLogger("delight_fairseq.export")


class _Writer:
    """Collects arrays under dotted names; returns the structure as JSON."""

    def __init__(self):
        self.arrays: Dict[str, np.ndarray] = {}

    def put(self, name: str, tensor) -> str:
        self.arrays[name] = np.ascontiguousarray(tensor.detach().cpu().numpy())
        return name

    def norm(self, name: str, norm: fn.Norm) -> dict:
        return dict(
            w=self.put(f"{name}.w", norm.weight),
            b=self.put(f"{name}.b", norm.bias),
            eps=float(norm.eps),
        )

    def linear(self, name: str, linear) -> dict:
        bias = getattr(linear, "bias", None)
        return dict(
            w=self.put(f"{name}.w", linear.weight.t()),  # in x out
            b=None if bias is None else self.put(f"{name}.b", bias),
        )

    def dextra(self, name: str, dx: fn.DExTra) -> dict:
        def lna(part: str, layer: fn.LinearNormAct) -> dict:
            out = self.linear(f"{name}.{part}", layer)
            out["norm"] = self.norm(f"{name}.{part}.norm", layer.norm)
            return out

        glts = []
        for i, glt in enumerate(dx.glts):
            p = f"{name}.glt{i}"
            glts.append(
                dict(
                    groups=int(glt.groups),
                    out=int(glt.out_features),
                    shuffle=bool(glt.shuffle),
                    w=self.put(f"{p}.w", glt.weight),
                    b=self.put(f"{p}.b", glt.bias),
                    norm_w=self.put(f"{p}.norm_w", glt.norm_weight),
                    norm_b=self.put(f"{p}.norm_b", glt.norm_bias),
                )
            )
        return dict(
            proj=int(dx.proj),
            input=lna("input", dx.input_layer),
            glts=glts,
            output=lna("output", dx.output_layer),
        )

    def sublayer(self, name: str, sub: fn.Sublayer) -> dict:
        return dict(before=sub.before, norm=self.norm(name, sub.norm))


def _block(w: _Writer, name: str, block, decoder: bool) -> dict:
    out = dict(
        heads=int(block.heads),
        dextra=w.dextra(f"{name}.dextra", block.dextra),
        self_attn_norm=w.sublayer(f"{name}.self_attn_norm", block.self_attn_norm),
        qkv=w.linear(f"{name}.qkv", block.qkv),
        self_out=w.linear(f"{name}.self_out", block.self_out),
        ffn_norm=w.sublayer(f"{name}.ffn_norm", block.ffn_norm),
        fc1=w.linear(f"{name}.fc1", block.fc1),
        fc2=w.linear(f"{name}.fc2", block.fc2),
    )
    if not decoder:
        out["scaling"] = float(block.scaling)
        return out
    out.update(
        scaling=float(block.self_scaling),
        encoder_attn_norm=w.sublayer(
            f"{name}.encoder_attn_norm", block.encoder_attn_norm
        ),
        q=w.linear(f"{name}.q", block.q),
        kv=w.linear(f"{name}.kv", block.kv),
        encoder_out=w.linear(f"{name}.encoder_out", block.encoder_out),
        encoder_scaling=float(block.encoder_scaling),
    )
    return out


def _side(w: _Writer, name: str, stack, plan, table) -> dict:
    """The encoder's or the decoder's part: ``stack`` the model's module,
    ``plan`` its functional weights, ``table`` its tokens' V x d_m rows."""
    decoder = name == "dec"
    rows = int(stack.max_positions())
    out = dict(
        tokens=w.put(f"{name}.tokens", table),
        positions=w.put(
            f"{name}.positions",
            _positions(stack.embed_positions, rows, stack.padding_idx),
        ),
        blocks=[
            _block(w, f"{name}.{i}", b, decoder) for i, b in enumerate(plan.blocks)
        ],
        final_norm=None
        if plan.final_norm is None
        else w.norm(f"{name}.final_norm", plan.final_norm),
        max_positions=rows,
    )
    if decoder:
        out.update(
            head_dim=int(stack.layers[0].self_attn.proj_dim),
            project_out=None
            if plan.project_out is None
            else w.linear("dec.project_out", plan.project_out),
            output=w.put("dec.output", plan.output[0].t()),  # map_dim x V
        )
    return out


def _positions(module, rows: int, padding_idx: int) -> torch.Tensor:
    """The rows the positions module adds to real tokens 1 .. ``rows``."""
    probe = torch.full((1, rows), padding_idx + 1, dtype=torch.long)
    return module(probe)[0]


def _symbols(dictionary) -> dict:
    return dict(
        symbols=list(dictionary.symbols),
        pad=dictionary.pad(),
        eos=dictionary.eos(),
        unk=dictionary.unk(),
        bos=dictionary.bos(),
    )


@torch.no_grad()
def export_model(model, src_dict, tgt_dict, out: Path, text: Optional[dict] = None):
    """Write ``model`` and its dictionaries to ``out``; ``text``: what
    :mod:`delight_lite` needs to rebuild the text codec (the languages and
    the data-bin's ``prep.json`` settings). Returns ``out``. The weights are
    float32, or float64 for a float64 model (which delight_lite then runs in
    float64, as the tests do)."""
    if next(model.parameters()).dtype != torch.float64:
        model = model.float()
    model = model.cpu().eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = _Writer()
    encoder, decoder = model.encoder, model.decoder
    enc = fn.Encoder(encoder)
    dec = fn.DecoderWeights(decoder)
    # the embeddings act per token: each vocabulary through its module, once
    enc_table = encoder.embed_tokens(torch.arange(len(src_dict)).unsqueeze(0))[0]
    dec_table = decoder.embed_tokens(torch.arange(len(tgt_dict)).unsqueeze(0))[0]
    config = dict(
        format=FORMAT,
        encoder=_side(w, "enc", encoder, enc, enc_table),
        decoder=_side(w, "dec", decoder, dec, dec_table),
        source=_symbols(src_dict),
        target=_symbols(tgt_dict),
        text=text or {},
    )
    np.savez(out / WEIGHTS, **w.arrays)
    (out / CONFIG).write_text(json.dumps(config), encoding="utf-8")
    return out


def export_checkpoint(checkpoint, out, data=None, **load) -> Path:
    """Load ``checkpoint`` as delight-translate does (``data``: its data-bin;
    ``load``: :func:`~delight_fairseq.inference.loading.load_model`'s
    options) and export it, with the data-bin's subword model and
    ``prep.json``, to ``out``."""
    from .loading import load_model

    model, task, info = load_model(checkpoint, data, **load)
    out = Path(out)
    text = dict(
        source_lang=info["source_lang"],
        target_lang=info["target_lang"],
        prep=info["prep"],
    )
    export_model(model, task.source_dictionary, task.target_dictionary, out, text)
    copied = []
    for folder in (info["data"], info["src_dict"].parent, info["checkpoint"].parent):
        if folder is None:
            continue
        for name in (SPM_MODEL, BPE_CODES, PREP_STAMP):
            if (Path(folder) / name).is_file() and not (out / name).exists():
                shutil.copyfile(Path(folder) / name, out / name)
                copied.append(name)
    size = (out / WEIGHTS).stat().st_size
    logger.info(
        "exported %s to %s: %.1f MB of weights%s",
        info["checkpoint"], out, size / 1e6,
        f"; copied {', '.join(copied)}" if copied else "",
    )  # fmt: skip
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``delight-export``."""
    from delight_lite.cli import setup_logging

    from .loading import TranslateError

    parser = argparse.ArgumentParser(
        prog="delight-export",
        description="Export a DeLighT checkpoint for delight-lite, which "
        "translates with NumPy alone (no torch, no fairseq).",
    )
    parser.add_argument("checkpoint", help="a .pt file or a checkpoint folder")
    parser.add_argument("--data", help="the data-bin (default: the checkpoint's)")
    parser.add_argument(
        "--out", required=True, help="the folder to write (its files are replaced)"
    )
    parser.add_argument("--source-lang", "-s", help="default: the checkpoint's")
    parser.add_argument("--target-lang", "-t", help="default: the checkpoint's")
    parser.add_argument("--src-dict", help="default: DATA/dict.SRC.txt")
    parser.add_argument("--tgt-dict", help="default: DATA/dict.TGT.txt")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        export_checkpoint(
            args.checkpoint,
            args.out,
            args.data,
            source_lang=args.source_lang,
            target_lang=args.target_lang,
            src_dict=args.src_dict,
            tgt_dict=args.tgt_dict,
        )
    except TranslateError as e:
        parser.exit(2, f"delight-export: error: {e}\n")
    return 0
