"""Settings a user can get wrong fail at build time, naming the flag."""

import pytest

from helpers import build


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(delight_emb_out_dim=129), "--delight-emb-out-dim"),
        (dict(delight_emb_out_dim=0), "--delight-emb-out-dim"),
        # d_m/2 = 100 does not split into the 8 groups of d_m 200's cap
        (dict(delight_emb_out_dim=200), "--delight-enc-max-groups"),
        (
            dict(delight_emb_out_dim=80, delight_dec_max_groups=16),
            "--delight-dec-max-groups",
        ),
        (
            dict(delight_enc_min_depth=6, delight_enc_max_depth=4),
            "--delight-enc-min-depth",
        ),
        (dict(delight_dec_min_depth=9), "--delight-dec-min-depth"),
        (dict(delight_enc_min_depth=0), "--delight-enc-min-depth"),
        (dict(delight_enc_width_mult=0.0), "--delight-enc-width-mult"),
        (dict(delight_dec_width_mult=-1.0), "--delight-dec-width-mult"),
        (dict(delight_emb_width_mult=0.0), "--delight-emb-width-mult"),
        (dict(delight_enc_ffn_red=3), "--delight-enc-ffn-red"),
        (dict(delight_dec_ffn_red=0), "--delight-dec-ffn-red"),
        (dict(delight_enc_ffn_dim=0), "--delight-enc-ffn-dim"),
        (dict(delight_dec_ffn_dim=-4), "--delight-dec-ffn-dim"),
        (dict(delight_enc_dec_attn_dim=0), "--delight-enc-dec-attn-dim"),
        # 4 heads do not split a 66-wide encoder-decoder attention
        (
            dict(delight_attention_heads=4, delight_enc_dec_attn_dim=66),
            "--delight-enc-dec-attn-dim",
        ),
        (dict(delight_enc_scaling="uniform"), "--delight-enc-scaling"),
        (dict(delight_dec_layers=0), "--delight-dec-layers"),
        (dict(dropout=1.0), "--dropout"),
        (dict(delight_emb_dropout=-0.1), "--delight-emb-dropout"),
        (dict(delight_emb_out_dim=16), "--delight-emb-out-dim"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_flag(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        build("delight", src_vocab=50, **overrides)


def test_error_message_says_what_would_work():
    with pytest.raises(ValueError, match=r"one of \[2, 4, 8, 16\]"):
        build("delight", src_vocab=50, delight_enc_ffn_red=3)
    with pytest.raises(ValueError, match="min <= max"):
        build("delight", src_vocab=50, delight_enc_min_depth=6, delight_enc_max_depth=4)


@pytest.mark.parametrize(
    "arch", ["delight_transformer_wmt14_en_de", "delight_transformer_wmt16_en_ro"]
)
def test_shared_embeddings_need_a_joined_dictionary(arch):
    with pytest.raises(ValueError, match="--joined-dictionary"):
        build(arch, src_vocab=50, tgt_vocab=60)


def test_explicit_share_all_with_separate_dictionaries():
    with pytest.raises(ValueError, match="--share-all-embeddings"):
        build("delight", src_vocab=50, tgt_vocab=60, share_all_embeddings=True)


def test_iwslt_preset_accepts_separate_dictionaries():
    model = build(
        "delight_transformer_iwslt_de_en",
        src_vocab=50,
        tgt_vocab=60,
        delight_emb_out_dim=128,
    )
    assert model.decoder.output_projection is None  # decoder input/output tied


def test_odd_width_that_splits_is_fine():
    # d_m 96: g_max = 4, d_m/2 = 48 splits into 2 and 4 groups
    build("delight", src_vocab=50, delight_emb_out_dim=96)


def test_below_d_m_32_explicit_group_caps_build():
    """The group-cap rule needs d_m >= 32; explicit caps are enough below it."""
    caps = {f"delight_{s}_max_groups": 1 for s in ("emb", "enc", "dec")}
    model = build("delight", src_vocab=30, delight_emb_out_dim=16, **caps)
    assert model.cfg.delight_enc_max_groups == 1
    with pytest.raises(ValueError, match="--delight-emb-max-groups"):
        build("delight", src_vocab=30, delight_emb_out_dim=16)
