"""Per-block summary of a DeLighT preset: DExTra depth, width multiplier,
parameters and MACs, with the MACs counted by torch's flop counter.

    python benchmarks/summary.py --arch delight_transformer_wmt14_en_de --d-m 512 \\
        --vocab 43730 [--tgt-vocab N] [--src-len 20 --tgt-len 20] [--json out.json]

MACs are for one sentence: the encoder on src-len tokens, the decoder on
tgt-len tokens with teacher forcing (one full pass), each half of the FLOPs that
``torch.utils.flop_counter.FlopCounterMode`` counts. Total depth counts a block
with N GLTs as N + 4 layers, as the paper does.
"""

import argparse
import json
import logging
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from delight_fairseq.builder import build_model, sized_dictionary


def macs(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops() // 2


def summarize(model, src_len: int, tgt_len: int) -> dict:
    model.eval()
    d_m = model.cfg.delight_emb_out_dim
    src = torch.randint(4, len(model.encoder.dictionary), (1, src_len))
    prev = torch.randint(4, len(model.decoder.dictionary), (1, tgt_len))
    enc_x = torch.randn(src_len, 1, d_m)
    dec_x = torch.randn(tgt_len, 1, d_m)
    causal = model.decoder.buffered_future_mask(dec_x)
    rows = []

    def add(name, module, count, depth=None, width=None):
        rows.append(
            {
                "block": name,
                "dextra_depth": depth,
                "width_mult": width,
                "params": sum(p.numel() for p in module.parameters()),
                "macs": count,
            }
        )

    tables = {
        id(m.embed_tokens.table): m.embed_tokens.table
        for m in (model.encoder, model.decoder)
    }
    rows.append(
        {
            "block": f"look-up table(s): {len(tables)}",
            "dextra_depth": None,
            "width_mult": None,
            "macs": 0,
            "params": sum(t.weight.numel() for t in tables.values()),
        }
    )
    add(
        "encoder embedding DExTra",
        model.encoder.embed_tokens.dextra,
        macs(lambda: model.encoder.embed_tokens(src)),
        model.cfg.delight_emb_depth,
    )
    for i, layer in enumerate(model.encoder.layers):
        add(
            f"encoder block {i}",
            layer,
            macs(lambda layer=layer: layer(enc_x, None)),
            layer.dextra.depth,
            layer.dextra.width_mult,
        )
    add(
        "decoder embedding DExTra",
        model.decoder.embed_tokens.dextra,
        macs(lambda: model.decoder.embed_tokens(prev)),
        model.cfg.delight_emb_depth,
    )
    for i, layer in enumerate(model.decoder.layers):
        add(
            f"decoder block {i}",
            layer,
            macs(lambda layer=layer: layer(dec_x, enc_x, None, self_attn_mask=causal)),
            layer.dextra.depth,
            layer.dextra.width_mult,
        )
    feats = torch.randn(1, tgt_len, d_m)
    head = macs(
        lambda: model.decoder.output_layer(
            model.decoder.project_out_dim(feats)
            if model.decoder.project_out_dim
            else feats
        )
    )
    rows.append(
        {
            "block": "output projection + softmax",
            "dextra_depth": None,
            "width_mult": None,
            "params": sum(p.numel() for p in model.decoder.project_out_dim.parameters())
            if model.decoder.project_out_dim is not None
            else 0,
            "macs": head,
        }
    )
    whole = macs(lambda: model(src, torch.tensor([src_len]), prev))
    depths = [
        layer.dextra.depth for layer in (*model.encoder.layers, *model.decoder.layers)
    ]
    return {
        "blocks": rows,
        "total_params": sum(p.numel() for p in model.parameters()),
        "total_macs": whole,
        "total_depth": sum(d + 4 for d in depths),
        "src_len": src_len,
        "tgt_len": tgt_len,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="delight_transformer_wmt14_en_de")
    parser.add_argument("--d-m", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=43_730)
    parser.add_argument("--tgt-vocab", type=int, help="separate target dictionary size")
    parser.add_argument("--src-len", type=int, default=20)
    parser.add_argument("--tgt-len", type=int, default=20)
    parser.add_argument("--json")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    model = build_model(
        args.arch,
        sized_dictionary(args.vocab),
        sized_dictionary(args.tgt_vocab) if args.tgt_vocab else None,
        delight_emb_out_dim=args.d_m,
    )
    result = summarize(model, args.src_len, args.tgt_len)
    print(
        f"{args.arch}, d_m {args.d_m}, vocabulary {args.vocab}"
        f"{f' / {args.tgt_vocab}' if args.tgt_vocab else ''}, "
        f"{args.src_len} source / {args.tgt_len} target tokens"
    )
    print(f"{'block':<40} {'depth':>5} {'width':>6} {'params':>12} {'MMACs':>9}")
    for r in result["blocks"]:
        depth = "" if r["dextra_depth"] is None else r["dextra_depth"]
        width = "" if r["width_mult"] is None else r["width_mult"]
        params = "" if r["params"] is None else f"{r['params']:,}"
        print(
            f"{r['block']:<40} {depth:>5} {width:>6} {params:>12} {r['macs'] / 1e6:>9.2f}"
        )
    print(
        f"total: {result['total_params']:,} parameters, {result['total_macs'] / 1e6:.1f} M "
        f"MACs, depth {result['total_depth']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
