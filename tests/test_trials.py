"""benchmarks/trials.py: what each 60-minute trial of issue 9 changes in the model
it builds on, and nothing else (docs/recipes.md, "Every 60-minute run at a glance").
The dropout trial changes only the dropouts, the schedule trials only the decay of the
LR, and the combined trial both, drawing its dropout with --delight-fast-dropout; the
paper-shape trial is the published preset's depths at d_m 128, the table trial the
transformer's table width at d_m 128, the FFN trial FFNs as wide as d_m 192, and the
d_m 208 trial those FFNs at d_m 208 with width multiplier 1, each at most half the
transformer's parameters; the trials on the FFN trial change one setting each (label
smoothing, dropout, heads, weight decay); the size-matched transformer is the
annealed transformer narrowed to the FFN trial's size. The later trials, from the
wall-clock schedule on, are in test_trials_clock.py, those at d_m 160 in
test_trials_d160.py."""

import pytest

from helpers import n_params, train_namespace
from trial_helpers import (
    COMMON,
    anneals_within,
    built,
    changed,
    half_the_transformer,
    learning_rates,
    parsed,
    shared_changes,
)


def test_the_delight_trial_changes_only_the_dropouts(trials):
    # the catalog's d_m 192 (dropout 0.1, no attention or DExTra dropout) against
    # the first shoot-out's dropouts (multi30k.BASE["delight"])
    assert changed(trials, "delight_d192", "delight_d192_reg") == {
        "dropout": (0.1, 0.2),
        "ffn_dropout": (0.1, 0.2),
        "attention_dropout": (0.0, 0.05),
        "delight_dropout": (0.0, 0.05),
    }


@pytest.mark.parametrize(
    "recipe, peak, warmup, hour",
    # each model's peak LR and warmup, and the updates it makes in 60 minutes here
    [("delight_d192", 0.003, 400, 4680), ("transformer_256", 0.002, 250, 2990)],
)
def test_the_schedule_trials_anneal_to_zero_within_the_hour(
    trials, recipe, peak, warmup, hour
):
    before = parsed(trials, recipe)
    after = parsed(trials, f"{recipe}_cosine")
    shared = vars(before).keys() & vars(after).keys()
    assert {k for k in shared if vars(before)[k] != vars(after)[k]} == {"lr_scheduler"}
    assert (before.lr_scheduler, after.lr_scheduler) == ("inverse_sqrt", "cosine")
    steps = [0, warmup // 2, warmup, 2 * warmup, hour // 2, int(0.85 * hour), hour]
    old, new = learning_rates(before, steps), learning_rates(after, steps)
    # the same warmup from 1e-7 to the same peak
    assert new[:3] == pytest.approx(old[:3], rel=1e-6)
    assert new[2] == pytest.approx(peak)
    # then higher than inverse_sqrt at first, falling monotonically to about 0 at
    # the end of the hour, where inverse_sqrt is still at 29 % of its peak
    assert new[3] > old[3]
    assert new[2:] == sorted(new[2:], reverse=True)
    assert old[-1] == pytest.approx(peak * (warmup / hour) ** 0.5)
    assert new[-1] < peak * 0.01
    # a run a little faster than the hour's updates does not start a second period
    assert learning_rates(after, [int(1.025 * hour)])[0] < peak * 0.01


def test_the_combined_trial_is_the_dropout_trial_annealed_with_fast_dropout(trials):
    reg = parsed(trials, "delight_d192_reg")
    trial = parsed(trials, "delight_d192_reg_cosine")
    shared = vars(reg).keys() & vars(trial).keys()
    differ = {k for k in shared if vars(reg)[k] != vars(trial)[k]}
    assert differ == {"lr_scheduler"} and trial.lr_scheduler == "cosine"
    # a store_true flag is in fairseq's namespace only when given
    assert trial.delight_fast_dropout and not hasattr(reg, "delight_fast_dropout")
    hour = trials.REG_FAST_UPDATES
    warmup, end, faster = learning_rates(trial, [400, hour, int(1.025 * hour)])
    assert warmup == pytest.approx(0.003)
    assert end < 0.003 * 0.01 and faster < 0.003 * 0.01


@pytest.mark.parametrize(
    "trial, setting, value",
    [("delight_d192_lr_cosine", "lr", [0.006]),
     ("delight_d192_ls_cosine", "label_smoothing", 0.2)],
)  # fmt: skip
def test_the_lr_and_smoothing_trials_change_one_setting_of_the_schedule_trial(
    trials, trial, setting, value
):
    cosine, trial = parsed(trials, "delight_d192_cosine"), parsed(trials, trial)
    shared = vars(cosine).keys() & vars(trial).keys()
    assert {k for k in shared if vars(cosine)[k] != vars(trial)[k]} == {setting}
    assert getattr(trial, setting) == value
    peak, hour = trial.lr[0], trials.D192_HOUR
    warmup, end, faster = learning_rates(trial, [400, hour, int(1.025 * hour)])
    assert warmup == pytest.approx(peak)
    assert end < peak * 0.01 and faster < peak * 0.01


def test_the_paper_shape_trial_is_the_published_preset_at_d_m_128(trials):
    assert shared_changes(trials, "delight_d128_paper_cosine") == {
        "delight_emb_depth": (3, 4),
        "delight_enc_layers": (4, 8), "delight_dec_layers": (4, 8),
        "delight_enc_min_depth": (3, 4), "delight_dec_min_depth": (3, 4),
        "delight_enc_max_depth": (6, 8), "delight_dec_max_depth": (6, 8),
        "lr_scheduler": ("inverse_sqrt", "cosine"),
    }  # fmt: skip
    anneals_within(parsed(trials, "delight_d128_paper_cosine"), trials.PAPER_D128_HOUR)
    # DELIGHT.md section 6: the preset at d_m 128 has 2,496,224 parameters besides
    # its 128-wide table; Multi30k's joined dictionary has 6,008 entries
    vocab = 6_008
    delight = n_params(built(trials, "delight_d128_paper_cosine", vocab))
    assert delight == 2_496_224 + 128 * vocab
    assert delight <= half_the_transformer(trials, vocab)


def test_the_table_trial_widens_only_the_table_and_the_output_space(trials):
    assert shared_changes(trials, "delight_d128_map256_cosine") == {
        "delight_emb_map_dim": (128, 256),
        "lr_scheduler": ("inverse_sqrt", "cosine"),
    }  # fmt: skip
    anneals_within(
        parsed(trials, "delight_d128_map256_cosine"), trials.MAP256_D128_HOUR
    )
    # the transformer's table width: V x 256, and the decoder projects d_m 128 up to
    # it before the tied softmax (DELIGHT.md section 4)
    vocab = 6_008
    model = built(trials, "delight_d128_map256_cosine", vocab)
    decoder = model.decoder
    assert decoder.embed_tokens.table.weight.shape == (vocab, 256)
    assert decoder.project_out_dim.weight.shape == (256, 128)
    assert n_params(model) <= half_the_transformer(trials, vocab)


def test_the_ffn_trial_widens_only_the_light_ffns_of_d_m_192(trials):
    trial = "delight_d192_ffn1_cosine"
    assert shared_changes(trials, trial, base="delight_d192") == {
        "delight_enc_ffn_red": (4, 1), "delight_dec_ffn_red": (4, 1),
        "lr_scheduler": ("inverse_sqrt", "cosine"),
    }  # fmt: skip
    anneals_within(parsed(trials, trial), trials.FFN1_D192_HOUR)
    # each of the 4 + 4 blocks' FFNs, Linear(d, d/r) and Linear(d/r, d) with biases,
    # grows from a hidden width of 48 to 192; nothing else changes
    d, vocab = 192, 6_008

    def ffn(hidden):
        return 2 * d * hidden + hidden + d

    recipe, wide = (n_params(built(trials, m, vocab)) for m in ("delight_d192", trial))
    assert wide - recipe == 8 * (ffn(192) - ffn(48))
    assert wide <= half_the_transformer(trials, vocab)


def test_the_d_m_208_trial_pays_for_wider_blocks_with_width_multiplier_1(trials):
    trial = "delight_d208_w1_ffn1_cosine"
    assert shared_changes(trials, trial, base="delight_d192") == {
        "delight_emb_out_dim": (192, 208),
        "delight_enc_width_mult": (2, 1), "delight_dec_width_mult": (2, 1),
        # the embedding DExTras follow the encoder's multiplier (the preset's rule)
        "delight_emb_width_mult": (2, 1),
        "delight_enc_ffn_red": (4, 1), "delight_dec_ffn_red": (4, 1),
        "lr_scheduler": ("inverse_sqrt", "cosine"),
    }  # fmt: skip
    anneals_within(parsed(trials, trial), trials.D208_W1_FFN1_HOUR)
    vocab = 6_008
    model = built(trials, trial, vocab)
    for layers in (model.encoder.layers, model.decoder.layers):
        # the FFNs are as wide as d_m (reduction 1); block-wise scaling takes each
        # DExTra's widest layer from w_m x d_m in the first block to
        # (w_m + N_max / N_min - 1) x d_m in the last (DELIGHT.md section 5)
        for layer in layers:
            assert (
                layer.ffn.fc1.weight.shape == layer.ffn.fc2.weight.shape == (208, 208)
            )
        widest = [
            max(g.out_features for g in layer.dextra.glt_layers) for layer in layers
        ]
        assert (widest[0], widest[-1]) == (1 * 208, 2 * 208)
    assert n_params(model) <= half_the_transformer(trials, vocab)


def test_the_combined_ffn_trial_doubles_only_the_ffn_trials_label_smoothing(trials):
    trial = "delight_d192_ffn1_ls_cosine"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_cosine") == {
        "label_smoothing": (0.1, 0.2),
    }


def test_the_dropout_ffn_trial_doubles_the_ffn_trials_block_and_ffn_dropout(trials):
    trial = "delight_d192_ffn1_reg_cosine"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_cosine") == {
        "dropout": (0.1, 0.2),
        "ffn_dropout": (0.1, 0.2),
        "lr_period_updates": (
            round(1.03 * trials.FFN1_D192_HOUR) - 400,
            round(1.03 * trials.FFN1_REG_D192_HOUR) - 400,
        ),
    }
    namespace = parsed(trials, trial)
    assert namespace.delight_fast_dropout
    assert (namespace.attention_dropout, namespace.delight_dropout) == (0.0, 0.0)
    anneals_within(namespace, trials.FFN1_REG_D192_HOUR)


def test_the_heads_trial_splits_only_the_ffn_trials_attention(trials):
    trial = "delight_d192_ffn1_heads4_cosine"
    hours = trials.FFN1_D192_HOUR, trials.FFN1_HEADS4_D192_HOUR
    assert shared_changes(trials, trial, base="delight_d192_ffn1_cosine") == {
        "delight_attention_heads": (1, 4),
        "lr_period_updates": tuple(round(1.03 * hour) - 400 for hour in hours),
    }
    anneals_within(parsed(trials, trial), hours[1])
    # the same parameters as the eighth trial's, 4 heads of d_m/2 / 4 = 24
    vocab = 6008
    model = built(trials, trial, vocab)
    base = built(trials, "delight_d192_ffn1_cosine", vocab)
    assert n_params(model) == n_params(base)
    for layer in model.decoder.layers:
        for attention in (layer.self_attn, layer.encoder_attn):
            assert (attention.heads, attention.proj_dim // attention.heads) == (4, 24)


def test_the_weight_decay_trial_adds_only_decay_to_the_ffn_trial(trials):
    trial = "delight_d192_ffn1_wd_cosine"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_cosine") == {
        "weight_decay": (0.0, 0.01),
    }
    anneals_within(parsed(trials, trial), trials.FFN1_D192_HOUR)


def test_the_size_matched_transformer_narrows_only_the_annealed_transformer(trials):
    trial = "transformer_172_cosine"
    hours = trials.T256_HOUR, trials.T172_HOUR
    assert shared_changes(trials, trial, base="transformer_256_cosine") == {
        "encoder_embed_dim": (256, 172), "decoder_embed_dim": (256, 172),
        "encoder_ffn_embed_dim": (1024, 688), "decoder_ffn_embed_dim": (1024, 688),
        # fairseq's transformer sets these to the decoder's width
        "decoder_input_dim": (256, 172), "decoder_output_dim": (256, 172),
        "lr_period_updates": tuple(round(1.03 * hour) - 250 for hour in hours),
    }  # fmt: skip
    namespace = parsed(trials, trial)
    assert namespace.encoder_attention_heads == namespace.decoder_attention_heads == 4
    # fairseq's post-norm layers: attention 4 (d^2 + d), FFN 2 d f + f + d, a
    # LayerNorm (2 d) after each sublayer; one table of V x d (sinusoidal positions)
    d, f, vocab = 172, 688, 6_008
    attention, ffn = 4 * (d * d + d), 2 * d * f + f + d
    encoder_layer = attention + ffn + 2 * 2 * d
    decoder_layer = 2 * attention + ffn + 3 * 2 * d
    expected = vocab * d + 3 * encoder_layer + 3 * decoder_layer
    assert n_params(built(trials, trial, vocab)) == expected == 3_534_944
    # within 1 % of the eighth trial's DeLighT, the size it is matched to
    delight = n_params(built(trials, "delight_d192_ffn1_cosine", vocab))
    assert abs(expected / delight - 1) < 0.01


def test_no_model_but_the_schedule_trials_overrides_common(trials):
    # the models' flags come after COMMON on the command line; before the schedule
    # trial they came first, and every earlier run must parse as it did then
    common, models = COMMON, trials.ALL_MODELS
    schedules = {n for n, (_, extra) in trials.TRIALS.items()
                 if "--lr-scheduler" in extra}  # fmt: skip
    assert schedules == {
        "delight_d192_cosine",
        "transformer_256_cosine",
        "delight_d192_reg_cosine",
        "delight_d192_lr_cosine",
        "delight_d192_ls_cosine",
        "delight_d128_paper_cosine",
        "delight_d128_map256_cosine",
        "delight_d192_ffn1_cosine",
        "delight_d208_w1_ffn1_cosine",
        "delight_d192_ffn1_ls_cosine",
        "delight_d192_ffn1_reg_cosine",
        "delight_d192_ffn1_heads4_cosine",
        "delight_d192_ffn1_wd_cosine",
        "delight_d192_ffn1_clock",
        "delight_d192_ffn1_clock_fast",
        "delight_d192_ffn1_clock_fast_b2048",
        "delight_d192_ffn1_clock_fast_e6d2",
        "delight_d192_ffn1_clock_fast_prenorm",
        "delight_d192_ffn1_clock_fast_prenorm_lr5",
        "delight_d192_ffn1_clock_fast_prenorm_reg",
        "delight_d192_ffn1_fast_prenorm_reg_updates",
        "delight_d192_ffn1_fast_prenorm_spm3k_updates",
        "delight_d192_ffn1_fast_prenorm_spm8k_map96_updates",
        "delight_d192_ffn1_fast_prenorm_inner_updates",
        "delight_d160_ffn480_fast_prenorm_updates",
        "delight_d160_depth2to4_ffn608_fast_prenorm_updates",
        "delight_d160_depth2to4_ffn608_fast_prenorm_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd3_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_drop2_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_lr2_hour",
        "delight_d160_depth2to4_ffn528_cross160_fast_prenorm_wd_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop3_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_spm8k_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_b2048_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_b1024_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop3_b2048_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop4_b2048_hour",
        "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_drop2_b2048_clock",
        "transformer_172_cosine",
        "transformer_256_clock",
    }
    for model in sorted(set(models) - schedules):
        now = vars(train_namespace([*common, *models[model]]))
        then = vars(train_namespace([*models[model], *common]))
        assert now == then, model
