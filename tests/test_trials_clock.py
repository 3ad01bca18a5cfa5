"""benchmarks/trials.py: the trials from the wall-clock schedule on, each changing
one setting of the FFN trial's (test_trials.py): the scheduler, how dropout masks are
drawn, the batch, blocks per side, where blocks normalize; then the peak LR or the
dropout of pre-norm, the same for a fixed number of updates, pre-norm on a smaller
vocabulary, or a larger one in a table of the same size, pre-norm with dropout
inside its DExTras and attentions, pre-norm at d_m 160 with FFNs 3 x d_m wide, and
the same with DExTras half as deep and FFNs 608 wide, for 2,970 updates and for the
updates it makes in the transformer's hour, then with weight decay, with decay and
more dropout, with decay at a lower peak LR, and with decay and an encoder-decoder
attention d_m wide."""

import json

import pytest

from helpers import n_params
from trial_helpers import (
    built,
    changed,
    ffn_shapes,
    half_the_transformer,
    learning_rates,
    optimizer_and_config,
    parsed,
    shared_changes,
)


def test_the_clock_trial_anneals_the_ffn_trial_over_the_hours_wall_clock(trials):
    trial = "delight_d192_ffn1_clock"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_cosine") == {
        "lr_scheduler": ("cosine", "wallclock_cosine"),
    }
    namespace = parsed(trials, trial)
    # the eighth trial's peak and warmup; multi30k.train's --stop-time-hours is
    # the time the cosine spans
    assert (namespace.lr, namespace.warmup_updates) == ([0.003], 400)


def test_the_fast_clock_trial_changes_only_how_the_clock_trial_draws_dropout(trials):
    trial = "delight_d192_ffn1_clock_fast"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_clock") == {}
    fast, clock = parsed(trials, trial), parsed(trials, "delight_d192_ffn1_clock")
    # fairseq leaves an unset boolean flag out of the namespace
    assert vars(fast).keys() - vars(clock).keys() == {"delight_fast_dropout"}
    assert fast.delight_fast_dropout and not hasattr(clock, "delight_fast_dropout")


def test_the_half_batch_trial_changes_only_the_batch(trials):
    trial = "delight_d192_ffn1_clock_fast_b2048"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_clock_fast") == {
        "max_tokens": (4096, 2048),
        # fairseq sizes validation batches as training's when unset
        "max_tokens_valid": (4096, 2048),
    }


def test_the_shallow_decoder_trial_moves_two_decoder_blocks_to_the_encoder(trials):
    trial = "delight_d192_ffn1_clock_fast_e6d2"
    assert shared_changes(trials, trial, base="delight_d192_ffn1_clock_fast") == {
        "delight_enc_layers": (4, 6), "delight_dec_layers": (4, 2),
    }  # fmt: skip
    vocab = 6_008
    model = built(trials, trial, vocab)
    # block-wise scaling over each side's own blocks: depths floor(linspace(3, 6, B))
    # (DELIGHT.md section 5), 3 3 4 4 5 6 for the encoder's 6 and 3 6 for the
    # decoder's 2
    depths = [[len(layer.dextra.glt_layers) for layer in side.layers]
              for side in (model.encoder, model.decoder)]  # fmt: skip
    assert depths == [[3, 3, 4, 4, 5, 6], [3, 6]]
    assert n_params(model) <= half_the_transformer(trials, vocab)


def test_the_pre_norm_trial_normalizes_the_fast_clock_trials_inputs(trials):
    trial, base = "delight_d192_ffn1_clock_fast_prenorm", "delight_d192_ffn1_clock_fast"
    assert shared_changes(trials, trial, base=base) == {
        "encoder_normalize_before": (False, True),
        "decoder_normalize_before": (False, True),
    }
    vocab = 6_008
    model, post = built(trials, trial, vocab), built(trials, base, vocab)
    for layer in [*model.encoder.layers, *model.decoder.layers]:
        assert layer.self_attn_norm.normalize_before and layer.ffn_norm.normalize_before
    # one more LayerNorm of d_m at the end of each side (2 x 192 each)
    assert n_params(model) == n_params(post) + 2 * 2 * 192


def test_the_high_lr_pre_norm_trial_changes_only_the_peak(trials):
    trial, base = (
        "delight_d192_ffn1_clock_fast_prenorm_lr5",
        "delight_d192_ffn1_clock_fast_prenorm",
    )
    assert shared_changes(trials, trial, base=base) == {"lr": ([0.003], [0.005])}
    # the same wall-clock schedule and warmup (400 updates), up to the higher peak
    namespace = parsed(trials, trial)
    assert namespace.lr_scheduler == "wallclock_cosine"
    assert namespace.warmup_updates == 400


def test_the_regularized_pre_norm_trial_changes_only_two_dropouts(trials):
    trial, base = (
        "delight_d192_ffn1_clock_fast_prenorm_reg",
        "delight_d192_ffn1_clock_fast_prenorm",
    )
    assert shared_changes(trials, trial, base=base) == {
        "dropout": (0.1, 0.2), "ffn_dropout": (0.1, 0.2),
    }  # fmt: skip
    namespace = parsed(trials, trial)
    assert namespace.encoder_normalize_before and namespace.delight_fast_dropout
    assert (namespace.attention_dropout, namespace.delight_dropout) == (0.0, 0.0)


def test_the_fixed_update_trial_runs_the_regularized_pre_norm_trial_for_its_hour(
    trials,
):
    trial, base = (
        "delight_d192_ffn1_fast_prenorm_reg_updates",
        "delight_d192_ffn1_clock_fast_prenorm_reg",
    )
    hour = trials.PRENORM_HOUR
    assert shared_changes(trials, trial, base=base) == {
        "lr_scheduler": ("wallclock_cosine", "cosine"),
        "max_update": (0, hour),
    }
    namespace = parsed(trials, trial)
    assert namespace.lr_period_updates == hour - 400
    # the same warmup and peak, then about 0 for the last update (the scheduler sets
    # the LR of update n after update n - 1; fairseq-train stops after update hour)
    warmup, last = learning_rates(namespace, [400, hour - 1])
    assert warmup == pytest.approx(0.003) and last < 0.003 * 1e-5
    assert namespace.dropout == namespace.ffn_dropout == 0.2


def fake_prep(monkeypatch, trials, folder):
    """multi30k's data-bins made in ``folder`` by a stand-in for ``delight-prep``
    that records what it was asked for; returns the record."""
    made = []

    def prep(bench, opts):
        made.append((bench.name, opts.dest, opts.subwords))
        opts.dest.mkdir(parents=True)
        (opts.dest / "dict.de.txt").write_text("")

    monkeypatch.setattr(trials.multi30k, "DATA_BIN", folder / "multi30k_de_en")
    monkeypatch.setattr("delight_fairseq.tools.prep.cli.prepare", prep)
    return made


def test_the_vocabulary_trial_runs_the_pre_norm_trial_for_its_hour_on_3000_pieces(
    trials, monkeypatch, tmp_path, capsys
):
    trial, base = (
        "delight_d192_ffn1_fast_prenorm_spm3k_updates",
        "delight_d192_ffn1_clock_fast_prenorm",
    )
    # the flags: the twentieth trial's but for its two dropouts, so the eighteenth
    # trial's annealed over its hour's updates
    assert shared_changes(
        trials, trial, base="delight_d192_ffn1_fast_prenorm_reg_updates"
    ) == {"dropout": (0.2, 0.1), "ffn_dropout": (0.2, 0.1)}
    # the data: the recipe's preparation with 3,000 pieces, in a folder of its own
    # beside the recipe's data-bin, which the models outside trials.PIECES keep
    made = fake_prep(monkeypatch, trials, tmp_path)
    assert trials.data_bin(trial) == tmp_path / "multi30k_de_en_3000"
    assert trials.data_bin(base) == tmp_path / "multi30k_de_en"
    assert trials.data_bin(trial) == tmp_path / "multi30k_de_en_3000"  # made once
    assert made == [
        ("multi30k_de_en", tmp_path / "multi30k_de_en_3000", 3_000),
        ("multi30k_de_en", tmp_path / "multi30k_de_en", None),
    ]
    # its flags alone would train on the recipe's data: `trials.py args` says so
    trials.main(["args", trial])
    out, err = capsys.readouterr()
    assert json.loads(out) == trials.ALL_MODELS[trial]
    assert str(tmp_path / "multi30k_de_en_3000") in err and "--subwords 3000" in err
    trials.main(["args", base])
    assert capsys.readouterr().err == ""
    # the table, 128 wide, loses 3,000 rows (the dictionaries: pieces, 4 specials,
    # padded to a multiple of 8); nothing else changes
    small, recipe = built(trials, trial, 3_008), built(trials, base, 6_008)
    assert n_params(recipe) - n_params(small) == 3_000 * 128
    assert n_params(small) == 3_128_576


def test_the_wide_vocabulary_trial_keeps_the_tables_size_on_8000_pieces(
    trials, monkeypatch, tmp_path
):
    trial, small = (
        "delight_d192_ffn1_fast_prenorm_spm8k_map96_updates",
        "delight_d192_ffn1_fast_prenorm_spm3k_updates",
    )
    # the 3,000-piece trial's flags with a 96-wide table and output space
    assert shared_changes(trials, trial, base=small) == {
        "delight_emb_map_dim": (128, 96)
    }
    made = fake_prep(monkeypatch, trials, tmp_path)
    assert trials.data_bin(trial) == tmp_path / "multi30k_de_en_8000"
    assert made == [("multi30k_de_en", tmp_path / "multi30k_de_en_8000", 8_000)]
    assert trials.PIECES == {small: 3_000, trial: 8_000}
    # 8,008 x 96 entries, 256 fewer than the recipe's 6,008 x 128, and the
    # embeddings' first DExTra layer reads 96 numbers instead of 128
    model = built(trials, trial, 8_008)
    assert model.encoder.embed_tokens.table.weight.shape == (8_008, 96)
    assert n_params(model) == 3_481_408
    assert n_params(model) <= half_the_transformer(trials)


def test_the_inner_dropout_trial_regularizes_the_blocks_glts_and_attentions(trials):
    from delight_fairseq.attention import SingleHeadAttention
    from delight_fairseq.group_linear import GroupLinear, LinearNormAct

    trial = "delight_d192_ffn1_fast_prenorm_inner_updates"
    # the 3,000-piece trial's flags (the eighteenth trial over its hour's updates)
    # on the recipe's data, with dropout 0.1 inside the blocks
    assert shared_changes(
        trials, trial, base="delight_d192_ffn1_fast_prenorm_spm3k_updates"
    ) == {"delight_dropout": (0.0, 0.1), "attention_dropout": (0.0, 0.1)}
    assert trial not in trials.PIECES
    # the flags reach every GLT layer of the DExTras (the blocks' and the
    # embeddings') and every attention (4 + 4 self-attentions, 4 cross-attentions),
    # and change no parameter
    model = built(trials, trial, 6_008)
    glts = [m for m in model.modules() if isinstance(m, (GroupLinear, LinearNormAct))]
    attentions = [m for m in model.modules() if isinstance(m, SingleHeadAttention)]
    assert glts and {m.dropout for m in glts} == {0.1}
    assert len(attentions) == 12 and {m.dropout for m in attentions} == {0.1}
    # (pre-norm's closing LayerNorm on each side: 2 x 2 x 192 over the eighth
    # trial's 3,511,808)
    base = built(trials, "delight_d192_ffn1_clock_fast_prenorm", 6_008)
    assert n_params(model) == n_params(base) == 3_511_808 + 2 * 2 * 192


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
