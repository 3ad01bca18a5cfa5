"""Parameter counts of models built through fairseq's registry, against the
tables of docs/architecture.md section 8 (exact)."""

import pytest

from delight_fairseq.scaling import dextra_params, group_cap

from helpers import build, n_params

# d_m: (emb DExTra each, encoder blocks, decoder blocks, out proj, non-vocab)
SPEC_TABLE = {
    128: (85_696, 1_029_040, 1_295_792, 0, 2_496_224),
    256: (215_680, 3_334_228, 4_392_020, 32_768, 8_190_376),
    384: (407_104, 7_205_692, 9_578_812, 49_152, 17_647_864),
    512: (659_968, 12_783_686, 16_996_422, 65_536, 31_165_580),
    640: (974_272, 19_915_462, 26_492_102, 81_920, 48_438_028),
}
WMT_PRESETS = [
    "delight_transformer_wmt14_en_de",
    "delight_transformer_wmt14_de_en",
    "delight_transformer_wmt14_en_fr",
    "delight_transformer_wmt14_fr_en",
    "delight_transformer_wmt16_en_ro",
    "delight_transformer_wmt16_ro_en",
]


def parts(model):
    proj = model.decoder.project_out_dim
    return (
        n_params(model.encoder.embed_tokens.dextra),
        n_params(model.encoder.layers),
        n_params(model.decoder.layers),
        n_params(proj) if proj is not None else 0,
    )


@pytest.mark.parametrize("d_m", sorted(SPEC_TABLE))
@pytest.mark.parametrize("vocab", [1_000, 43_740])
def test_spec_table_shared_vocabulary(d_m, vocab):
    model = build(
        "delight_transformer_wmt14_en_de", src_vocab=vocab, delight_emb_out_dim=d_m
    )
    emb, enc, dec, proj, non_vocab = SPEC_TABLE[d_m]
    assert parts(model) == (emb, enc, dec, proj)
    assert n_params(model.decoder.embed_tokens.dextra) == emb
    # one shared table of V x 128 rows
    assert n_params(model) == non_vocab + 128 * vocab


@pytest.mark.parametrize("arch", WMT_PRESETS)
def test_every_wmt_preset_matches_the_table(arch):
    model = build(arch, src_vocab=5_000, delight_emb_out_dim=256)
    assert n_params(model) == SPEC_TABLE[256][4] + 128 * 5_000


def test_per_block_counts_at_128():
    model = build(
        "delight_transformer_wmt14_en_de", src_vocab=100, delight_emb_out_dim=128
    )
    enc = [n_params(layer) for layer in model.encoder.layers]
    dec = [n_params(layer) for layer in model.decoder.layers]
    assert enc == [88_416, 93_624, 98_468, 102_132, 140_968, 147_952, 153_584, 203_896]
    assert [d - e for d, e in zip(dec, enc)] == [33_344] * 8


def test_row_differences_are_exact():
    totals = {
        d: n_params(
            build(
                "delight_transformer_wmt14_en_de",
                src_vocab=43_730,
                delight_emb_out_dim=d,
            )
        )
        for d in SPEC_TABLE
    }
    dims = sorted(totals)
    exact = [SPEC_TABLE[b][4] - SPEC_TABLE[a][4] for a, b in zip(dims, dims[1:])]
    assert [totals[b] - totals[a] for a, b in zip(dims, dims[1:])] == exact
    published = [round(totals[d] / 1e6, 2) for d in dims]
    diffs = [round(b - a, 2) for a, b in zip(published, published[1:])]
    assert diffs == [5.70, 9.46, 13.51, 17.28]


# The authors' totals (millions, from their logs). One joined dictionary size
# per language pair reproduces every row: these sizes lie inside the narrow
# range that all rows of a pair allow.
PUBLISHED = {
    ("delight_transformer_wmt14_en_de", 43_730): {
        128: 8.09,
        256: 13.79,
        384: 23.25,
        512: 36.76,
        640: 54.04,
    },
    ("delight_transformer_wmt14_en_fr", 44_515): {
        128: 8.19,
        256: 13.89,
        384: 23.35,
        512: 36.86,
        640: 54.14,
    },
    ("delight_transformer_wmt16_en_ro", 34_968): {128: 6.97, 256: 12.67, 384: 22.12},
}


@pytest.mark.parametrize(
    "arch, vocab, d_m, millions",
    [(arch, v, d, m) for (arch, v), row in PUBLISHED.items() for d, m in row.items()],
)
def test_published_totals(arch, vocab, d_m, millions):
    model = build(arch, src_vocab=vocab, delight_emb_out_dim=d_m)
    assert round(n_params(model) / 1e6, 2) == millions


def test_separate_dictionaries_iwslt_style():
    # decoder input/output tying only: two tables, no output projection matrix
    model = build(
        "delight_transformer_iwslt_de_en",
        src_vocab=8_848,
        tgt_vocab=6_632,
        delight_emb_out_dim=128,
    )
    assert n_params(model) == SPEC_TABLE[128][4] + 128 * (8_848 + 6_632)
    assert model.decoder.output_projection is None


def test_untied_output_adds_a_matrix():
    model = build("delight", src_vocab=500, tgt_vocab=300)
    assert n_params(model) == SPEC_TABLE[128][4] + 128 * (500 + 300) + 128 * 300


@pytest.mark.parametrize(
    "overrides",
    [
        dict(delight_emb_out_dim=192),
        dict(
            delight_emb_out_dim=256,
            delight_enc_min_depth=3,
            delight_enc_max_depth=6,
            delight_dec_min_depth=2,
            delight_dec_max_depth=5,
        ),
        dict(
            delight_emb_out_dim=320,
            delight_enc_width_mult=1.5,
            delight_dec_width_mult=2.5,
        ),
        dict(delight_emb_out_dim=512, delight_enc_layers=5, delight_dec_layers=3),
        # FFN hidden widths set directly, wider than d_m (off the paper)
        dict(delight_emb_out_dim=160, delight_enc_ffn_dim=480, delight_dec_ffn_dim=96),
        # the encoder-decoder attention set wider than d_m/2 (off the paper)
        dict(delight_emb_out_dim=160, delight_enc_dec_attn_dim=160),
        dict(delight_emb_out_dim=256, delight_enc_dec_attn_dim=96),
        dict(
            delight_emb_out_dim=256,
            delight_enc_scaling="uniform",
            delight_enc_min_depth=5,
            delight_enc_max_depth=5,
        ),
    ],
)
def test_other_configurations_follow_the_rules(overrides):
    """Count each part from the formulas of docs/architecture.md section 8,
    independently of the modules."""
    model = build("delight", src_vocab=1_000, **overrides)
    cfg = model.cfg
    d_m, p = cfg.delight_emb_out_dim, cfg.delight_emb_out_dim // 2
    c = cfg.delight_enc_dec_attn_dim or p  # the encoder-decoder attention's width
    cap = group_cap(d_m)

    def block(depth, mult, h, decoder):
        n = dextra_params(d_m, p, p, depth, mult, cap)
        n += (p * 3 * p + 3 * p) + (p * d_m + d_m) + 2 * d_m  # attention + LayerNorm
        n += (d_m * h + h) + (h * d_m + d_m) + 2 * d_m  # FFN d_m -> h -> d_m
        if decoder:
            n += (d_m * c + c) + (d_m * 2 * c + 2 * c) + (c * d_m + d_m) + 2 * d_m
        return n

    from delight_fairseq.scaling import block_schedule

    for side, layers, decoder in (
        ("enc", model.encoder.layers, False),
        ("dec", model.decoder.layers, True),
    ):
        sched = block_schedule(
            getattr(cfg, f"delight_{side}_layers"),
            getattr(cfg, f"delight_{side}_min_depth"),
            getattr(cfg, f"delight_{side}_max_depth"),
            getattr(cfg, f"delight_{side}_width_mult"),
            getattr(cfg, f"delight_{side}_scaling"),
        )
        # the hidden width: the flag when set, else d_m / the reduction
        h = getattr(cfg, f"delight_{side}_ffn_dim") or (
            d_m // getattr(cfg, f"delight_{side}_ffn_red")
        )
        assert [n_params(m) for m in layers] == [
            block(b.depth, b.width_mult, h, decoder) for b in sched
        ]
    emb = dextra_params(
        128, p, d_m, cfg.delight_emb_depth, cfg.delight_emb_width_mult, cap
    )
    assert n_params(model.encoder.embed_tokens.dextra) == emb
