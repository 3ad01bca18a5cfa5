"""The issue 9 trials at d_m 160, the twenty-fourth on (docs/recipes.md, "Past the
recipe's length"): ``add(trials, prenorm, prenorm_updates)`` puts them into trials.py's
TRIALS, built on its pre-norm trial's flags (``prenorm``) and those flags for its
2,970 updates (``prenorm_updates``).
"""

from typing import Dict, List, Tuple

from multi30k import CLOCK, for_updates

Trials = Dict[str, Tuple[str, List[str]]]


def extend(trials: Trials, trial: str, flags: List[str]) -> Tuple[str, List[str]]:
    """``trial``'s model and flags (in ``trials``) with ``flags`` after them: a trial
    that changes an earlier one."""
    model, extra = trials[trial]
    return model, extra + flags


# the twenty-fourth trial: the pre-norm trial for its 2,970 updates (prenorm_updates)
# with the transformer's kind of FFN inside the budget, d_m 160 and an FFN hidden width
# of 3 x d_m (480; the plugin's --delight-enc-ffn-dim and --delight-dec-ffn-dim, off the
# paper, whose light FFN only reduces), 3,522,936 parameters (49.8 %); widening the FFN
# from d_m / 4 to d_m (the eighth trial) is the one change that moved validation by
# more than the seeds' spread; the dropouts stay the base's 0.1 (the preset's width
# rule would lower them to 0.08 at d_m 160)
D160 = ["--delight-emb-out-dim", "160", "--dropout", "0.1", "--ffn-dropout", "0.1"]
D160_FFN480 = D160 + ["--delight-enc-ffn-dim", "480", "--delight-dec-ffn-dim", "480"]
# the twenty-fifth trial: the twenty-fourth with DExTras half as deep (2 -> 4 GLT
# layers over each side's blocks, the embeddings' 2, instead of 3 -> 6 and 3) and what
# that frees spent on the FFNs (608 wide, 3.8 x d_m, where the size-matched transformer
# has 4 x): 3,516,144 parameters (49.7 %); only the sixth trial had changed the depth,
# and it made it deeper; the shallower stack runs a training step in about 0.9 x the
# time of the twenty-fourth trial's (the runs keep its 2,970 updates)
SHALLOW_F608 = ["--delight-enc-min-depth", "2", "--delight-enc-max-depth", "4",
                "--delight-dec-min-depth", "2", "--delight-dec-max-depth", "4",
                "--delight-emb-depth", "2",
                "--delight-enc-ffn-dim", "608", "--delight-dec-ffn-dim", "608"]  # fmt: skip
# the updates that the twenty-fifth trial's shape makes in the hour of the annealed
# transformer's two-seed pair (2,521 and 2,593 updates on 2026-12-01): that pair's mean
# times the ratio of the two models' training speeds, measured one after the other on
# 2026-12-03 (`python benchmarks/curves.py --probe 150 --models` with both, each alone:
# 1.456 against 0.987 updates/s); so the comparison is at equal wall clock, where the
# trials at prenorm_updates' 2,970 compare at about the transformer's updates
SHALLOW_HOUR = 3_770
# the updates that the thirty-third trial's shape makes in that hour at batches of
# 2,048 tokens: SHALLOW_HOUR times the ratio of the two batches' training speeds,
# measured one after the other on 2026-12-04 (`python benchmarks/curves.py --probe 150
# --models` with the thirty-third trial and the thirty-sixth, each alone: 2.559 against
# 1.238 updates/s, so each update on half the tokens takes 0.48 x the time)
B2048_HOUR = 7_790
# the updates that shape makes in that hour at batches of 1,024 tokens: B2048_HOUR
# times the ratio measured the same way on 2026-12-04 (the thirty-sixth trial and the
# thirty-seventh, each alone: 5.435 against 2.800 updates/s)
B1024_HOUR = 15_120
# the thirty-second trial's name, less its schedule; the trials built on it extend it
HEADS4 = "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd"


# the flags (each with a value) that set a trial's schedule and its number of updates
SCHEDULE = ("--lr-scheduler", "--lr-period-updates", "--max-update")


def on_the_clock(flags: List[str]) -> List[str]:
    """``flags`` with the LR annealed over the run's wall clock (the plugin's
    ``wallclock_cosine``, to ``--stop-time-hours``) instead of over a number of
    updates: their SCHEDULE flags left out, the same warmup and peak."""
    kept, rest = [], iter(flags)
    for flag in rest:
        if flag in SCHEDULE:
            next(rest)  # its value
        else:
            kept.append(flag)
    return kept + CLOCK


def dropouts(tenths: int) -> List[str]:
    """Block and FFN dropout of ``tenths`` / 10."""
    return ["--dropout", f"0.{tenths}", "--ffn-dropout", f"0.{tenths}"]


def add(trials: Trials, prenorm: List[str], prenorm_updates: List[str]):
    """Add the d_m 160 trials to ``trials``: the twenty-fourth and twenty-fifth
    trials (D160_FFN480, SHALLOW_F608) and those built on them."""
    trials["delight_d160_ffn480_fast_prenorm_updates"] = (
        "delight_d192",
        prenorm_updates + D160_FFN480,
    )
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_updates"] = (
        "delight_d192",
        prenorm_updates + D160 + SHALLOW_F608,
    )
    # the twenty-fifth trial for SHALLOW_HOUR updates, its LR annealed to 0 over them
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_hour"] = (
        "delight_d192",
        for_updates(prenorm, SHALLOW_HOUR) + D160 + SHALLOW_F608,
    )
    # the twenty-sixth trial with decoupled weight decay 0.1 (fairseq's Adam shrinks
    # each weight by lr x 0.1 per update): its shape ends its hour 0.73 nats lower on
    # training than on validation, the size-matched transformer about 0.25; the
    # thirteenth trial's 0.01 shrank the weights by only about 5 % over its whole
    # schedule (the sum of its LRs is about 5.4), where 0.1 shrinks them by about 43 %;
    # more dropout, the other regularizer, slowed learning per update (the eleventh and
    # twentieth trials)
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn608_fast_prenorm_hour",
        ["--weight-decay", "0.1"],
    )
    # the twenty-seventh trial's decay tripled (0.3; weights shrunk to about 18 % over
    # the schedule): 0.1 lowered the validation loss by 0.04 and raised the training
    # loss by 0.12, a gap still twice the size-matched transformer's; stopped at 2,520
    # updates, where its validation loss was 0.16 above both lighter decays'
    # (docs/recipes.md)
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_wd3_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn608_fast_prenorm_hour",
        ["--weight-decay", "0.3"],
    )
    # the twenty-seventh trial with block and FFN dropout 0.2 instead of 0.1: its decay
    # lowered the validation loss by 0.04 and left a train/valid gap of 0.57-0.62 nats,
    # more than twice the size-matched transformer's (dropout 0.3); 0.2 alone, on the
    # d_m 192 pre-norm shape (the twentieth trial), slowed early learning and ended at
    # its base's loss, so this asks whether the two regularizers add up
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_wd_drop2_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour",
        dropouts(2),
    )
    # the twenty-seventh trial at peak LR 0.002 instead of 0.003 (the transformer's
    # peak; the same warmup) with decay 0.15, so that lr x decay, what the decay takes
    # from a weight at each update, stays the twenty-seventh's: every trial of a higher
    # peak tied or lost, no trial went lower, and neither regularizer moved the shape's
    # validation loss below 2.30 (the twenty-ninth ends where the twenty-seventh does)
    trials["delight_d160_depth2to4_ffn608_fast_prenorm_wd_lr2_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour",
        ["--lr", "0.002", "--weight-decay", "0.15"],
    )
    # the twenty-seventh trial with an encoder-decoder attention d_m wide (160, 1 head;
    # --delight-enc-dec-attn-dim, off the paper's d_m/2) and FFNs 528 wide instead of
    # 608 to pay for it (3,516,464 parameters, 49.7 %): no setting of decay, dropout or
    # peak LR moved this shape's validation loss from 2.30, and it spends 13 % of its
    # parameters on attention where the size-matched transformer spends 30 %, a third of
    # them on attending to the source (the transformer's is 172 wide, DeLighT's 80)
    trials["delight_d160_depth2to4_ffn528_cross160_fast_prenorm_wd_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour",
        [
            "--delight-enc-dec-attn-dim",
            "160",
            "--delight-enc-ffn-dim",
            "528",
            "--delight-dec-ffn-dim",
            "528",
        ],  # fmt: skip
    )
    # the thirty-first trial with its attentions split into 4 heads (off the paper's
    # one; the same parameters): its encoder-decoder attention, 160 wide, now has 4
    # heads of 40 as the transformer's has 4 of 43, and of a transformer's attentions
    # those over the source are the ones that lose most when cut to one head (Michel et
    # al., 2019); the twelfth trial split only the d_m/2-wide attentions of the d_m 192
    # shape, into heads of 24
    trials[f"{HEADS4}_hour"] = extend(
        trials,
        "delight_d160_depth2to4_ffn528_cross160_fast_prenorm_wd_hour",
        ["--delight-attention-heads", "4"],
    )
    # the thirty-second trial with block and FFN dropout 0.2 instead of 0.1: its heads
    # fit the training set better than any DeLighT before (last training loss 1.60-1.62
    # against the thirty-first's 1.69-1.72) and leave the widest train/valid gap
    # (0.65-0.71 nats; the size-matched transformer, at dropout 0.3, about 0.25); on the
    # twenty-seventh's shape, whose gap was 0.57-0.62, 0.2 ended at its base's loss
    # (the twenty-ninth trial); the thirty-fourth, with 0.3, the size-matched
    # transformer's: 0.2 lowered the heads' final validation loss from 2.27-2.30 to
    # 2.24-2.29 and narrowed their train/valid gap from 0.65-0.71 nats to 0.43-0.50,
    # still wider than the transformer's 0.25
    for tenths in (2, 3):
        trials[f"{HEADS4}_drop{tenths}_hour"] = extend(
            trials, f"{HEADS4}_hour", dropouts(tenths)
        )
    # the thirty-third trial on 8,000 sentencepiece pieces in a 96-wide table and output
    # space (the twenty-second trial's vocabulary, trials.PIECES) instead of the
    # recipe's 6,000 in 128, its table the recipe's size: on validation the twenty-second
    # trial tied its base (means 41.47 and 41.39); it was picked for its test scores,
    # which tuning must not use (docs/recipes.md), and it is judged on validation alone
    trials[f"{HEADS4}_drop2_spm8k_hour"] = extend(
        trials, f"{HEADS4}_drop2_hour", ["--delight-emb-map-dim", "96"]
    )
    # the thirty-third trial with batches of 2,048 tokens instead of COMMON's 4,096, for
    # B2048_HOUR updates and its LR annealed to 0 over them (these flags come last, so
    # they replace the thirty-third's period and --max-update): the batch is the one
    # setting no trial at d_m 160 changed; at d_m 192, post-norm and unregularized, the
    # half batch (the sixteenth trial) learned faster for 20 minutes, then fell behind
    # the 4,096-token runs and ended within their range; the shape here is pre-norm
    # with decay 0.1 and dropout 0.2, and its validation loss still falls at its end;
    # the thirty-seventh halves the batch again (1,024 tokens, about 52 sentences) for
    # B1024_HOUR updates: the half batch had lowered the final validation loss from
    # 2.24-2.30 to 2.22-2.24 at equal wall clock; the quarter ended at 2.227, level
    # (docs/recipes.md)
    for tokens, updates in ((2048, B2048_HOUR), (1024, B1024_HOUR)):
        trials[f"{HEADS4}_drop2_b{tokens}_hour"] = extend(
            trials,
            f"{HEADS4}_drop2_hour",
            ["--max-tokens", str(tokens)] + for_updates([], updates),
        )
    # the thirty-sixth trial with block and FFN dropout 0.3 (the thirty-eighth): on half
    # the batch it makes twice the updates, and it ends its hour 0.54-0.56 nats lower on
    # training than on validation, where the size-matched transformer, at dropout 0.3,
    # leaves about 0.25; it ended at 2.216 and 2.220, the lowest DeLighT losses, level
    # with the thirty-sixth on BLEU; the thirty-ninth, with 0.4, ended higher (2.242)
    # and lower on validation BLEU (docs/recipes.md)
    for tenths in (3, 4):
        trials[f"{HEADS4}_drop{tenths}_b2048_hour"] = extend(
            trials, f"{HEADS4}_drop2_b2048_hour", dropouts(tenths)
        )
    # the thirty-sixth trial for the budget itself (the fortieth): its LR annealed over
    # the run's wall clock instead of over B2048_HOUR updates, run with --minutes 60;
    # B2048_HOUR applied the probes' speeds of 2026-12-03 and 2026-12-04 to the
    # transformer's hours of 2026-12-01, and the thirty-sixth's seeds made their
    # updates in 50.9 and 46.1 of the 60 minutes (the transformer's runs used all 60,
    # validation and checkpoints included, as --stop-time-hours counts them)
    model, flags = trials[f"{HEADS4}_drop2_b2048_hour"]
    trials[f"{HEADS4}_drop2_b2048_clock"] = (model, on_the_clock(flags))
