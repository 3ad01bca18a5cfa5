"""benchmarks/trials.py: the trials from the wall-clock schedule on, each changing
one setting of the FFN trial's (test_trials.py): the scheduler, how dropout masks are
drawn, the batch, blocks per side, where blocks normalize; then the peak LR or the
dropout of pre-norm, the same for a fixed number of updates, pre-norm on a smaller
vocabulary, or a larger one in a table of the same size, and pre-norm with dropout
inside its DExTras and attentions. The d_m 160 trials built on pre-norm are in
test_trials_d160.py."""

import json

import pytest

from helpers import n_params
from trial_helpers import (
    built,
    fake_prep,
    half_the_transformer,
    learning_rates,
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


def test_the_clock_transformer_anneals_the_annealed_transformer_over_the_wall_clock(
    trials,
):
    trial = "transformer_256_clock"
    assert shared_changes(trials, trial, base="transformer_256_cosine") == {
        "lr_scheduler": ("cosine", "wallclock_cosine"),
    }
    namespace = parsed(trials, trial)
    # the transformer recipe's peak and warmup, no update limit: multi30k.train's
    # --stop-time-hours is the time the cosine spans, as in the fortieth trial's
    assert (namespace.lr, namespace.warmup_updates) == ([0.002], 250)
    assert namespace.max_update == 0
    final = parsed(trials, f"{trials.trials_d160.HEADS4}_drop2_b2048_clock")
    assert namespace.lr_scheduler == final.lr_scheduler == "wallclock_cosine"
    # the size-matched comparison's transformer: 3+3 layers of 256, 7.07 M
    assert n_params(built(trials, trial, 6_008)) == n_params(
        built(trials, "transformer_256_cosine", 6_008)
    )


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
    assert trials.PIECES[small] == 3_000 and trials.PIECES[trial] == 8_000
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
