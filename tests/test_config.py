"""The typed per-side view of the flat flags (config.side)."""

import dataclasses

import pytest

from delight_fairseq.config import DeLighTConfig, Side, side
from delight_fairseq.validation import resolve


def test_each_side_reads_its_own_flags():
    cfg = DeLighTConfig(
        delight_enc_layers=3, delight_enc_min_depth=2, delight_enc_max_depth=5,
        delight_enc_width_mult=1.5, delight_enc_ffn_red=2, delight_enc_max_groups=4,
        delight_dec_layers=6, delight_dec_min_depth=3, delight_dec_max_depth=7,
        delight_dec_width_mult=2.5, delight_dec_ffn_red=8, delight_dec_max_groups=2,
        delight_dec_scaling="block", encoder_normalize_before=True,
    )  # fmt: skip
    assert side(cfg, "enc") == Side("enc", "block", 3, 2, 5, 1.5, 2, 4, True)
    assert side(cfg, "dec") == Side("dec", "block", 6, 3, 7, 2.5, 8, 2, False)
    assert [b.depth for b in side(cfg, "enc").schedule()] == [2, 3, 5]
    assert side(cfg, "dec").flag("max_groups") == "--delight-dec-max-groups"


def test_the_view_is_frozen_and_sides_are_named():
    s = side(resolve(DeLighTConfig()), "enc")
    assert s.max_groups == 4  # the cap at d_m 128, filled by resolve
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.layers = 2
    with pytest.raises(ValueError, match="'enc' or 'dec'"):
        side(DeLighTConfig(), "emb")


def test_an_ffn_width_replaces_the_reduction_on_its_own_side():
    cfg = resolve(
        DeLighTConfig(
            delight_emb_out_dim=160, delight_enc_ffn_red=4, delight_dec_ffn_red=2,
            delight_enc_ffn_dim=480,
        )
    )  # fmt: skip
    enc, dec = side(cfg, "enc"), side(cfg, "dec")
    assert (enc.ffn_dim, enc.ffn_width(160)) == (480, 480)
    # the other side keeps d_m / r
    assert (dec.ffn_dim, dec.ffn_width(160)) == (None, 80)
    assert enc.flag("ffn_dim") == "--delight-enc-ffn-dim"
