"""The 60-minute trials of issue 9 (docs/recipes.md, "Past the recipe's length"):
each is a model of the shoot-out (multi30k.MODELS) and the flags it adds, nothing else
changed but, for the models in PIECES, the vocabulary (data_bin). ALL_MODELS holds
both; curves.py trains any of them. The trials at d_m 160 are in trials_d160.py.

    python benchmarks/trials.py args MODEL     # fairseq-train flags of one model
                                               # (and, on stderr, its own data-bin)
    python benchmarks/trials.py models         # every model's name
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi30k  # noqa: E402
import trials_d160  # noqa: E402
from multi30k import BASE, CLOCK, MODELS, annealing, for_updates, recipe  # noqa: E402
from trials_d160 import extend  # noqa: E402

# what delight_d192 makes in 60 minutes here (its runs: 4,678 and 4,681 updates)
D192_HOUR = 4_680

# what delight_d192_reg_cosine makes in 60 minutes: the recipe's 4,680 updates times
# 0.90, its training speed against the recipe's (speed.py train, 3,870 against 4,317
# tokens/s), and 4 % more (the dropout trial's 60-minute run kept 0.77 of the
# recipe's speed where speed.py measured 0.74); its run made 4,153
REG_FAST_UPDATES = 4_300


def paper_depths() -> List[str]:
    """The published presets' depths (DELIGHT.md section 3): blocks of depth 4 -> 8,
    as many blocks as the last one's depth, and the embedding DExTra as deep as the
    first block; the field defaults of the catalog's records."""
    from delight_fairseq.catalog import Benchmark

    first, last = Benchmark.__dataclass_fields__["depths"].default
    flags = ["--delight-emb-depth", str(first)]
    for side in ("enc", "dec"):
        flags += [f"--delight-{side}-layers", str(last),
                  f"--delight-{side}-min-depth", str(first),
                  f"--delight-{side}-max-depth", str(last)]  # fmt: skip
    return flags


# what delight_d128 with the published depths makes in 60 minutes here, estimated
# from its first 9 minutes alone: 1.06 updates/s between validations, less 5 % for
# them and the checkpoints; its run made 3,882 (past the period by 71)
PAPER_D128_HOUR = 3_700

# what delight_d128 with a 256-wide table makes in 60 minutes here, estimated from
# 3.5 minutes of it beside 2.5 of the recipe (1.18 against 1.35 updates/s at 200
# updates): 1.18 updates/s, less 3 % for validations and checkpoints, and 4 % more
# (the paper-shape trial's run beat a like estimate by 5 %): 4,285
MAP256_D128_HOUR = 4_300

# what delight_d192 with FFN reduction 1 makes in 60 minutes here: a 2.5-minute probe
# of it alone (1.00 updates/s) times 0.95, what its seed-1 hour kept of its own probe's
# speed, rounded up so that 3,300-3,600 updates end the period at 0.9-1.0; seed 2 made
# 3,533 (seed 1 ran with 4,300 on a slower day: docs/recipes.md, "eighth trial")
FFN1_D192_HOUR = 3_500

# what delight_d192 at d_m 208, width multiplier 1 and FFN reduction 1 makes in 60
# minutes here: a 2.5-minute probe of it alone (0.91-0.94 updates/s) times 0.95, as
# FFN1_D192_HOUR; its run kept all of the probe's speed and made 3,365 (past the
# period by 69)
D208_W1_FFN1_HOUR = 3_200

# the light FFNs as wide as the block's input: reduction 1 instead of 4
FFN1 = ["--delight-enc-ffn-red", "1", "--delight-dec-ffn-red", "1"]

# what transformer_256 makes in 60 minutes here (its runs: 2,953 and 3,026 updates)
T256_HOUR = 2_990

# Trials at 60 minutes (docs/recipes.md, "Past the recipe's length"): a model of
# MODELS and the flags the trial adds to it, nothing else changed.
TRIALS = {
    # the first shoot-out's dropouts
    "delight_d192_reg": ("delight_d192", recipe(**BASE["delight"])),
    # the LR annealed to 0 within the hour (60-minute runs: 4,678 and 4,681 updates)
    "delight_d192_cosine": (
        "delight_d192",
        annealing(MODELS["delight_d192"], D192_HOUR),
    ),
    # the same for the transformer (T256_HOUR)
    "transformer_256_cosine": (
        "transformer_256",
        annealing(MODELS["transformer_256"], T256_HOUR),
    ),
    # the first shoot-out's dropouts again, drawn with --delight-fast-dropout, and
    # the LR annealed within the hour (REG_FAST_UPDATES)
    "delight_d192_reg_cosine": (
        "delight_d192",
        recipe(**BASE["delight"])
        + annealing(MODELS["delight_d192"], REG_FAST_UPDATES)
        + ["--delight-fast-dropout"],
    ),
    # twice the recipe's peak LR (the same warmup), annealed within the hour
    # (the 7-minute tuning never combined the recipe's low dropout with a higher LR)
    "delight_d192_lr_cosine": (
        "delight_d192",
        ["--lr", "0.006"] + annealing(MODELS["delight_d192"], D192_HOUR),
    ),
    # twice the label smoothing (0.2), annealed within the hour
    "delight_d192_ls_cosine": (
        "delight_d192",
        ["--label-smoothing", "0.2"] + annealing(MODELS["delight_d192"], D192_HOUR),
    ),
    # the published presets' shape at d_m 128 (3.27 M parameters, 46 % of the
    # transformer's): 8 + 8 blocks of depth 4 -> 8 instead of the recipe's 4 + 4 of
    # 3 -> 6; annealed within the hour as delight_d192_cosine
    "delight_d128_paper_cosine": (
        "delight_d128",
        paper_depths() + annealing(MODELS["delight_d128"], PAPER_D128_HOUR),
    ),
    # the recipe at d_m 128 with the transformer's table width: a 256-wide look-up
    # table and output space instead of 128 (2.78 M parameters, 39 %); annealed
    # within the hour as delight_d192_cosine
    "delight_d128_map256_cosine": (
        "delight_d128",
        ["--delight-emb-map-dim", "256"]
        + annealing(MODELS["delight_d128"], MAP256_D128_HOUR),
    ),
    # the recipe at d_m 192 with FFNs as wide as the block's input (reduction 1
    # instead of 4; 3.51 M parameters, 49.7 %); annealed within the hour as
    # delight_d192_cosine
    "delight_d192_ffn1_cosine": (
        "delight_d192",
        FFN1 + annealing(MODELS["delight_d192"], FFN1_D192_HOUR),
    ),
    # the eighth trial's FFNs at d_m 208, paid for by width multiplier 1 instead of 2
    # (3.47 M parameters, 49.1 %); the d_m 192 recipe's LR and dropouts, annealed
    # within the hour as delight_d192_cosine
    "delight_d208_w1_ffn1_cosine": (
        "delight_d192",
        ["--delight-emb-out-dim", "208"]
        + ["--delight-enc-width-mult", "1", "--delight-dec-width-mult", "1"]
        + FFN1
        + annealing(MODELS["delight_d192"], D208_W1_FFN1_HOUR),
    ),
}


# the eighth trial with twice the label smoothing (0.2): the two settings that scored
# best on validation among the DeLighT trials, together
TRIALS["delight_d192_ffn1_ls_cosine"] = extend(
    TRIALS, "delight_d192_ffn1_cosine", ["--label-smoothing", "0.2"]
)
# what delight_d192_ffn1_reg_cosine makes in 60 minutes here: a 2.5-minute probe of
# it alone (0.85 updates/s, against 0.99-1.01 for the eighth trial's) times 0.95, as
# FFN1_D192_HOUR, rounded up; its run made 3,181 (past the period by 91)
FFN1_REG_D192_HOUR = 3_000
# the eighth trial with twice its block and FFN dropout (0.2), drawn with
# --delight-fast-dropout: the eighth trial ends the hour with a lower training loss
# than the transformer's (each under its own dropout) and a higher validation loss
# (docs/recipes.md, "An eleventh trial")
TRIALS["delight_d192_ffn1_reg_cosine"] = (
    "delight_d192",
    FFN1
    + recipe(lr=0.003, dropout=0.2, attention=0.0, delight=0.0)
    + annealing(MODELS["delight_d192"], FFN1_REG_D192_HOUR)
    + ["--delight-fast-dropout"],
)
# what delight_d192_ffn1_heads4_cosine makes in 60 minutes here: a 2-minute probe of
# it alone (0.88 then 0.97 updates/s; the eighth trial's: 1.01 then 0.99) times 0.95,
# as FFN1_D192_HOUR; its run made 3,190
FFN1_HEADS4_D192_HOUR = 3_400
# the eighth trial with its attentions split into 4 heads (off the paper, which has
# one; the same parameters): the transformer, ahead per update, has 4
TRIALS["delight_d192_ffn1_heads4_cosine"] = (
    "delight_d192",
    FFN1
    + ["--delight-attention-heads", "4"]
    + annealing(MODELS["delight_d192"], FFN1_HEADS4_D192_HOUR),
)
# the eighth trial with decoupled weight decay 0.01 (fairseq's Adam; the authors use
# none): it ends the hour 0.6 nats lower on training than on validation, the
# size-matched transformer 0.25, and more dropout slowed its learning (the eleventh
# trial); the decay changes no speed, so the period stays FFN1_D192_HOUR
TRIALS["delight_d192_ffn1_wd_cosine"] = extend(
    TRIALS, "delight_d192_ffn1_cosine", ["--weight-decay", "0.01"]
)
# the eighth trial with its LR annealed over the hour's wall clock (the plugin's
# --lr-scheduler wallclock_cosine) instead of over an estimate of its updates: its
# seed 1 ended its period at 0.72 (18 % of the peak LR), its seed 2 at 0.98
TRIALS["delight_d192_ffn1_clock"] = (
    "delight_d192",
    FFN1 + CLOCK,
)
# the clock trial with its dropout masks drawn by the fused kernel
# (--delight-fast-dropout): the same distribution, other draws; 1.04x the training
# tokens/s at this dropout (README, Speed)
TRIALS["delight_d192_ffn1_clock_fast"] = extend(
    TRIALS, "delight_d192_ffn1_clock", ["--delight-fast-dropout"]
)
# the fifteenth trial with batches of 2,048 tokens instead of COMMON's 4,096: twice
# the updates in the hour at about the same tokens/s, each on half the tokens (the
# batch is the one setting no earlier trial of either family changed)
TRIALS["delight_d192_ffn1_clock_fast_b2048"] = extend(
    TRIALS, "delight_d192_ffn1_clock_fast", ["--max-tokens", "2048"]
)
# the fifteenth trial with a deep encoder and a shallow decoder: 6 + 2 blocks instead
# of 4 + 4, the same depths 3 -> 6 on each side (3.34 M parameters, 47 %); the decoder
# runs at every step of a beam search, the encoder once
TRIALS["delight_d192_ffn1_clock_fast_e6d2"] = extend(
    TRIALS,
    "delight_d192_ffn1_clock_fast",
    ["--delight-enc-layers", "6", "--delight-dec-layers", "2"],
)
# the fifteenth trial with pre-norm blocks (off the paper, which is post-norm; fairseq's
# --encoder-normalize-before and --decoder-normalize-before): each sublayer normalizes
# its input, and each side ends with one more LayerNorm
TRIALS["delight_d192_ffn1_clock_fast_prenorm"] = extend(
    TRIALS,
    "delight_d192_ffn1_clock_fast",
    ["--encoder-normalize-before", "--decoder-normalize-before"],
)
# the eighteenth trial at peak LR 0.005 instead of 0.003 (the same warmup): pre-norm
# blocks learn faster per update in both of its seeds, and deep post-norm stacks are
# the ones a high LR upsets (the fourth trial, post-norm, lost 0.7 at 0.006)
TRIALS["delight_d192_ffn1_clock_fast_prenorm_lr5"] = extend(
    TRIALS, "delight_d192_ffn1_clock_fast_prenorm", ["--lr", "0.005"]
)
# the eighteenth trial with twice its block and FFN dropout (0.2): pre-norm learns
# faster per update in both of its seeds, and the eleventh trial's 0.2 (post-norm)
# lost by learning slower; every setting of this shape ends the hour about 0.6 nats
# lower on training than on validation
TRIALS["delight_d192_ffn1_clock_fast_prenorm_reg"] = extend(
    TRIALS,
    "delight_d192_ffn1_clock_fast_prenorm",
    ["--dropout", "0.2", "--ffn-dropout", "0.2"],
)
# what the eighteenth trial's seeds made in their hours (2,904 and 3,038 updates)
PRENORM_HOUR = 2_970


# the twentieth trial for PRENORM_HOUR updates instead of the hour, its LR annealed to
# 0 over them: a normal hour's updates when this CPU runs slower than on the days of
# the other trials (run it with a budget above 60 minutes; dropout changes no step's
# work, so on a normal day the hour gives it as many updates as its base)
TRIALS["delight_d192_ffn1_fast_prenorm_reg_updates"] = (
    "delight_d192",
    for_updates(TRIALS["delight_d192_ffn1_clock_fast_prenorm_reg"][1], PRENORM_HOUR),
)
# what the transformer at d 172 makes in 60 minutes here: a 2.5-minute probe of it
# alone (1.01 updates/s) times 0.95, as FFN1_D192_HOUR; its runs made 3,364 and 3,459
T172_HOUR = 3_500
# the transformer's shape and tuned recipe at the eighth trial's size: 172 wide (4
# heads of 43, FFN 688), 3,534,944 parameters (50.0 %, DeLighT's 3,511,808 plus
# 0.7 %); the size-matched comparison, not a tuning trial of either family
T172 = ["--encoder-embed-dim", "172", "--decoder-embed-dim", "172",
        "--encoder-ffn-embed-dim", "688", "--decoder-ffn-embed-dim", "688"]  # fmt: skip
TRIALS["transformer_172_cosine"] = (
    "transformer_256",
    T172 + annealing(MODELS["transformer_256"], T172_HOUR),
)

# the eighteenth trial for PRENORM_HOUR updates with its LR annealed to 0 over them,
# as the twentieth trial: the base of the trials below
PRENORM_UPDATES = for_updates(
    TRIALS["delight_d192_ffn1_clock_fast_prenorm"][1], PRENORM_HOUR
)
# PRENORM_UPDATES on a joint vocabulary of 3,000 sentencepiece pieces instead of the
# recipe's 6,000 (3,128,576 parameters, 44 %, its table half as large): each
# piece is seen about twice as often in a corpus of 29,000 pairs, for 8-11 % longer
# sentences; the vocabulary is the one setting of the recipe no trial had changed
TRIALS["delight_d192_ffn1_fast_prenorm_spm3k_updates"] = (
    "delight_d192",
    PRENORM_UPDATES,
)
# the same on 8,000 pieces, its table as large as the recipe's (8,008 x 96 against
# 6,008 x 128 entries) by a 96-wide look-up table and output space instead of 128
# (3,481,408 parameters, 49.3 %): 2-3 % shorter sentences, each piece in 96 numbers
TRIALS["delight_d192_ffn1_fast_prenorm_spm8k_map96_updates"] = (
    "delight_d192",
    PRENORM_UPDATES + ["--delight-emb-map-dim", "96"],
)
# PRENORM_UPDATES with dropout inside its blocks, 0.1 for the DExTra layers (the
# embeddings' included) and for the attention weights, as the authors' IWSLT'14
# preset has at d_m 512 (the recipe has 0 for both): the shape's extra capacity over
# a transformer of its size lies in its GLT stacks, which no trial at this shape
# regularized
TRIALS["delight_d192_ffn1_fast_prenorm_inner_updates"] = (
    "delight_d192",
    PRENORM_UPDATES + ["--delight-dropout", "0.1", "--attention-dropout", "0.1"],
)
# the trials at d_m 160, the twenty-fourth on, built on the eighteenth (trials_d160.py)
trials_d160.add(
    TRIALS, TRIALS["delight_d192_ffn1_clock_fast_prenorm"][1], PRENORM_UPDATES
)
# the transformer with its LR annealed over the hour's wall clock, as the fortieth
# trial is: so that the final comparison's two families share the schedule and the day
TRIALS["transformer_256_clock"] = ("transformer_256", CLOCK)
# the sentencepiece pieces of the models that do not train on the recipe's data-bin
PIECES = {
    "delight_d192_ffn1_fast_prenorm_spm3k_updates": 3_000,
    "delight_d192_ffn1_fast_prenorm_spm8k_map96_updates": 8_000,
    "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_spm8k_hour": 8_000,
}

ALL_MODELS: Dict[str, List[str]] = {
    **MODELS,
    **{name: MODELS[base] + extra for name, (base, extra) in TRIALS.items()},
}


def data_bin(model: str) -> Path:
    """``model``'s data-bin, prepared when missing (multi30k.prepare)."""
    return multi30k.prepare(PIECES.get(model))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["args", "models"])
    parser.add_argument("model", nargs="?")
    args = parser.parse_args(argv)
    if args.what == "models":
        print(" ".join(ALL_MODELS))
    elif args.model not in ALL_MODELS:
        sys.exit(f"unknown model {args.model!r}; known: {', '.join(ALL_MODELS)}")
    else:
        print(json.dumps(ALL_MODELS[args.model]))
        if args.model in PIECES:  # the flags alone would train on the recipe's data
            pieces = PIECES[args.model]
            print(
                f"{args.model} trains on {multi30k.data_bin(pieces)} (delight-prep "
                f"multi30k_de_en --subwords {pieces}), not the recipe's data-bin",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
