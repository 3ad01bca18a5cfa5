"""benchmarks/trials_d160.py: the trials at d_m 160 built on the pre-norm trial
(test_trials_clock.py), each changing one setting of an earlier one: FFNs 3 x d_m wide,
then DExTras half as deep and FFNs 608 wide, for 2,970 updates and for the updates it
makes in the transformer's hour, then with weight decay, with decay and more dropout,
with decay at a lower peak LR, with decay and an encoder-decoder attention d_m wide,
that with its attentions in 4 heads, that with more dropout, that on 8,000
sentencepiece pieces, that on batches of half the tokens, that with more dropout, and
that annealed over the wall clock."""

import pytest

from helpers import n_params
from trial_helpers import (
    built,
    changed,
    fake_prep,
    ffn_shapes,
    half_the_transformer,
    learning_rates,
    optimizer_and_config,
    parsed,
    shared_changes,
)


def test_the_wide_ffn_trial_moves_parameters_from_the_width_to_the_ffns(trials):
    trial = "delight_d160_ffn480_fast_prenorm_updates"
    # the 3,000-piece trial's flags (the eighteenth trial over its hour's updates)
    # on the recipe's data, at d_m 160 with FFN hidden widths of 480; the dropouts
    # stay the base's 0.1 where the preset's width rule would lower them
    assert shared_changes(
        trials, trial, base="delight_d192_ffn1_fast_prenorm_spm3k_updates"
    ) == {
        "delight_emb_out_dim": (192, 160),
        "delight_enc_ffn_dim": (None, 480),
        "delight_dec_ffn_dim": (None, 480),
    }
    assert trial not in trials.PIECES
    model = built(trials, trial, 6_008)
    ffns = [
        layer.ffn for side in (model.encoder, model.decoder) for layer in side.layers
    ]
    assert len(ffns) == 8
    assert ffn_shapes(model) == {((480, 160), (160, 480))}
    assert {f.ffn_dropout for f in ffns} == {0.1}
    assert n_params(model) == 3_522_936
    assert n_params(model) <= half_the_transformer(trials)


def test_the_shallow_trial_moves_parameters_from_the_dextras_to_the_ffns(trials):
    trial = "delight_d160_depth2to4_ffn608_fast_prenorm_updates"
    # the wide-FFN trial's flags with DExTras 2 -> 4 deep (the embeddings' 2) and
    # FFNs 608 wide
    assert shared_changes(
        trials, trial, base="delight_d160_ffn480_fast_prenorm_updates"
    ) == {
        "delight_enc_min_depth": (3, 2),
        "delight_enc_max_depth": (6, 4),
        "delight_dec_min_depth": (3, 2),
        "delight_dec_max_depth": (6, 4),
        "delight_emb_depth": (3, 2),
        "delight_enc_ffn_dim": (480, 608),
        "delight_dec_ffn_dim": (480, 608),
    }
    assert trial not in trials.PIECES
    model = built(trials, trial, 6_008)
    sides = (model.encoder, model.decoder)
    # floor(linspace(2, 4, 4)) GLT layers per side's blocks
    for side in sides:
        assert [len(layer.dextra.glt_layers) for layer in side.layers] == [2, 2, 3, 4]
        assert len(side.embed_tokens.dextra.glt_layers) == 2
    assert ffn_shapes(model) == {((608, 160), (160, 608))}
    assert n_params(model) == 3_516_144
    assert n_params(model) <= half_the_transformer(trials)


def test_the_shallow_trials_hour_is_the_transformers_at_its_speed(trials):
    trial, base = (
        "delight_d160_depth2to4_ffn608_fast_prenorm_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_updates",
    )
    hour = trials.trials_d160.SHALLOW_HOUR
    # the annealed transformer's updates in its two-seed hours, times the speeds'
    # ratio (1.456 against 0.987 updates/s), to tens
    assert hour == round((2_521 + 2_593) / 2 * 1.456 / 0.987, -1)
    assert changed(trials, base, trial) == {
        "lr_period_updates": (trials.PRENORM_HOUR - 400, hour - 400),
        "max_update": (trials.PRENORM_HOUR, hour),
    }
    warmup, last = learning_rates(parsed(trials, trial), [400, hour - 1])
    assert warmup == pytest.approx(0.003) and last < 0.003 * 1e-5


def test_the_weight_decay_trials_shrink_the_shallow_hours_weights_by_43_and_82_percent(
    trials,
):
    import math

    import torch

    trial, base = (
        "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour",
        "delight_d160_depth2to4_ffn608_fast_prenorm_hour",
    )
    assert changed(trials, base, trial) == {"weight_decay": (0.0, 0.1)}
    tripled = "delight_d160_depth2to4_ffn608_fast_prenorm_wd3_hour"
    assert changed(trials, trial, tripled) == {"weight_decay": (0.1, 0.3)}
    # fairseq's Adam decays decoupled: with a zero gradient a step moves nothing but
    # the decay, which multiplies each weight by 1 - lr x weight_decay
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer, _ = optimizer_and_config(parsed(trials, trial), [weight])
    optimizer.set_lr(0.002)
    weight.grad = torch.zeros(3)
    optimizer.step()
    assert weight.detach().tolist() == pytest.approx([1 - 0.002 * 0.1] * 3)
    # over the whole schedule: the product of those factors, against the thirteenth
    # trial's 0.01 over its own schedule
    for name, decay, kept in (
        (trial, 0.1, (0.55, 0.60)),
        (tripled, 0.3, (0.17, 0.19)),
        ("delight_d192_ffn1_wd_cosine", 0.01, (0.94, 0.96)),
    ):
        schedule = parsed(trials, name)
        updates = schedule.max_update or round(1.03 * trials.FFN1_D192_HOUR)
        rates = learning_rates(schedule, list(range(updates)))
        assert schedule.weight_decay == decay
        factor = math.prod(1 - rate * decay for rate in rates)
        assert kept[0] < factor < kept[1], name


def test_the_decay_and_dropout_trial_changes_only_the_block_and_ffn_dropouts(trials):
    base = "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour"
    trial = "delight_d160_depth2to4_ffn608_fast_prenorm_wd_drop2_hour"
    assert changed(trials, base, trial) == {
        "dropout": (0.1, 0.2),
        "ffn_dropout": (0.1, 0.2),
    }


def test_the_lower_peak_trial_keeps_what_the_decay_takes(trials):
    import math

    base = "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour"
    trial = "delight_d160_depth2to4_ffn608_fast_prenorm_wd_lr2_hour"
    assert changed(trials, base, trial) == {
        "lr": ([0.003], [0.002]),
        "weight_decay": (0.1, 0.15),
    }
    kept = []
    for name in (base, trial):
        schedule = parsed(trials, name)
        rates = learning_rates(schedule, list(range(schedule.max_update)))
        assert max(rates) == pytest.approx(schedule.lr[0])
        kept.append(math.prod(1 - rate * schedule.weight_decay for rate in rates))
    assert kept[1] == pytest.approx(kept[0], rel=1e-3)


def test_the_wide_cross_attention_trial_pays_for_it_with_the_ffns(trials):
    base = "delight_d160_depth2to4_ffn608_fast_prenorm_wd_hour"
    trial = "delight_d160_depth2to4_ffn528_cross160_fast_prenorm_wd_hour"
    assert changed(trials, base, trial) == {
        "delight_enc_dec_attn_dim": (None, 160),
        "delight_enc_ffn_dim": (608, 528),
        "delight_dec_ffn_dim": (608, 528),
    }
    model = built(trials, trial, 6_008)
    # each decoder block's q: d_m -> 160, k and v: d_m -> 2 x 160, out: 160 -> d_m;
    # the self-attentions stay d_m/2 = 80 wide
    for layer in model.decoder.layers:
        attn = layer.encoder_attn
        assert attn.q_proj.weight.shape == (160, 160)
        assert attn.kv_proj.weight.shape == (320, 160)
        assert attn.out_proj.weight.shape == (160, 160)
        assert attn.scaling == pytest.approx(160**-0.5)
        assert layer.self_attn.qkv_proj.weight.shape == (240, 80)
    assert ffn_shapes(model) == {((528, 160), (160, 528))}
    # 4 blocks x 51,440 more in attention, 8 FFNs x 80 x 321 fewer
    before = n_params(built(trials, base, 6_008))
    assert n_params(model) == before + 4 * 51_440 - 8 * 80 * 321 == 3_516_464
    assert n_params(model) <= half_the_transformer(trials)


def test_the_heads_trial_splits_both_attentions_into_four(trials):
    base = "delight_d160_depth2to4_ffn528_cross160_fast_prenorm_wd_hour"
    trial = "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd_hour"
    assert changed(trials, base, trial) == {"delight_attention_heads": (1, 4)}
    model = built(trials, trial, 6_008)
    for layer in model.decoder.layers:
        # the encoder-decoder attention in heads of 40, the self-attention of 20
        assert layer.encoder_attn.heads == layer.self_attn.heads == 4
        assert layer.encoder_attn.scaling == pytest.approx(40**-0.5)
        assert layer.self_attn.scaling == pytest.approx(20**-0.5)
    assert all(layer.self_attn.heads == 4 for layer in model.encoder.layers)
    assert n_params(model) == n_params(built(trials, base, 6_008)) == 3_516_464


HEADS4 = "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd"


@pytest.mark.parametrize(
    "base, trial, before, after",
    [
        (f"{HEADS4}_hour", f"{HEADS4}_drop2_hour", 0.1, 0.2),
        (f"{HEADS4}_drop2_hour", f"{HEADS4}_drop3_hour", 0.2, 0.3),
        (f"{HEADS4}_drop2_b2048_hour", f"{HEADS4}_drop3_b2048_hour", 0.2, 0.3),
        (f"{HEADS4}_drop3_b2048_hour", f"{HEADS4}_drop4_b2048_hour", 0.3, 0.4),
    ],
)
def test_the_heads_dropout_trials_change_only_the_block_and_ffn_dropouts(
    trials, base, trial, before, after
):
    assert changed(trials, base, trial) == {
        "dropout": (before, after),
        "ffn_dropout": (before, after),
    }
    model = built(trials, trial, 6_008)
    layers = [layer for side in (model.encoder, model.decoder) for layer in side.layers]
    assert len(layers) == 8
    # the blocks' dropout after each attention, the FFNs' after their output layer;
    # the FFNs' inner (activation) dropout stays 0 and the heads stay 4
    assert {layer.dropout for layer in layers} == {after}
    assert {layer.ffn.ffn_dropout for layer in layers} == {after}
    assert {layer.ffn.activation_dropout for layer in layers} == {0.0}
    assert {layer.self_attn.heads for layer in layers} == {4}
    assert n_params(model) == 3_516_464


def test_the_vocabulary_trial_moves_the_heads_dropout_trial_to_8000_pieces(
    trials, monkeypatch, tmp_path
):
    base = f"{HEADS4}_drop2_hour"
    trial = f"{HEADS4}_drop2_spm8k_hour"
    assert changed(trials, base, trial) == {"delight_emb_map_dim": (128, 96)}
    # the twenty-second trial's data-bin: 8,000 pieces
    made = fake_prep(monkeypatch, trials, tmp_path)
    assert trials.data_bin(trial) == tmp_path / "multi30k_de_en_8000"
    assert made == [("multi30k_de_en", tmp_path / "multi30k_de_en_8000", 8_000)]
    assert trials.PIECES == {
        "delight_d192_ffn1_fast_prenorm_spm3k_updates": 3_000,
        "delight_d192_ffn1_fast_prenorm_spm8k_map96_updates": 8_000,
        trial: 8_000,
    }
    model = built(trials, trial, 8_008)
    assert model.encoder.embed_tokens.table.weight.shape == (8_008, 96)
    # 8,008 x 96 entries, 256 fewer than 6,008 x 128; each side's embedding DExTra
    # reads 96 numbers instead of 128 in its first layer (80 outputs), and the
    # decoder's last projection writes 96 instead of 128 (from 160)
    assert n_params(model) == 3_516_464 - 256 - 2 * 32 * 80 - 32 * 160 == 3_505_968
    assert n_params(model) <= half_the_transformer(trials)


@pytest.mark.parametrize(
    "tokens, hour, base_hour, ratio",
    [
        # the shape's hour at 4,096 tokens times the two batches' speeds' ratio (2.559
        # against 1.238 updates/s), to tens
        (2048, "B2048_HOUR", "SHALLOW_HOUR", 2.559 / 1.238),
        # and that hour times the next halving's (5.435 against 2.800)
        (1024, "B1024_HOUR", "B2048_HOUR", 5.435 / 2.800),
    ],
)
def test_the_smaller_batch_trials_halve_the_batch_over_their_hours_updates(
    trials, tokens, hour, base_hour, ratio
):
    base = f"{HEADS4}_drop2_hour"
    trial = f"{HEADS4}_drop2_b{tokens}_hour"
    hour = getattr(trials.trials_d160, hour)
    assert hour == round(getattr(trials.trials_d160, base_hour) * ratio, -1)
    assert changed(trials, base, trial) == {
        "max_tokens": (4096, tokens),
        # fairseq sizes validation batches as training's when unset
        "max_tokens_valid": (4096, tokens),
        "lr_period_updates": (trials.trials_d160.SHALLOW_HOUR - 400, hour - 400),
        "max_update": (trials.trials_d160.SHALLOW_HOUR, hour),
    }
    assert trial not in trials.PIECES
    # the same warmup and peak, annealed to 0 at its last update
    warmup, last = learning_rates(parsed(trials, trial), [400, hour - 1])
    assert warmup == pytest.approx(0.003) and last < 0.003 * 1e-5
    assert n_params(built(trials, trial, 6_008)) == 3_516_464


def test_the_clock_trial_anneals_the_half_batch_trial_over_the_budgets_wall_clock(
    trials,
):
    base = f"{HEADS4}_drop2_b2048_hour"
    trial = f"{HEADS4}_drop2_b2048_clock"
    assert shared_changes(trials, trial, base=base) == {
        "lr_scheduler": ("cosine", "wallclock_cosine"),
        # fairseq's default: no limit; the run stops at --stop-time-hours
        "max_update": (trials.trials_d160.B2048_HOUR, 0),
    }
    namespace = parsed(trials, trial)
    # the same peak and warmup, the cosine over the time that multi30k.train gives
    # the run (--stop-time-hours), which the scheduler requires
    assert (namespace.lr, namespace.warmup_updates) == ([0.003], 400)
    assert not hasattr(namespace, "lr_period_updates")
    with pytest.raises(ValueError, match="stop-time-hours"):
        learning_rates(namespace, [400])
    assert trial not in trials.PIECES
    assert n_params(built(trials, trial, 6_008)) == 3_516_464
