"""The architecture arithmetic against the numbers in docs/architecture.md
(sections 3, 4 and 8)."""

import pytest

from delight_fairseq.catalog import BENCHMARKS
from delight_fairseq.model import preset_dropouts
from delight_fairseq.scaling import (
    block_schedule,
    dextra_groups,
    dextra_params,
    dextra_plan,
    group_cap,
    scaled_dropout,
)


@pytest.mark.parametrize(
    "d_m, cap", [(128, 4), (256, 8), (384, 16), (512, 16), (640, 32), (64, 2), (32, 1)]
)
def test_group_cap(d_m, cap):
    assert group_cap(d_m) == cap


def test_group_cap_rejects_tiny_width():
    with pytest.raises(ValueError, match="--delight-emb-out-dim"):
        group_cap(16)


@pytest.mark.parametrize(
    "n, g_max, groups",
    [
        (8, 16, [2, 4, 8, 16, 16, 8, 4, 2]),
        (5, 8, [2, 4, 8, 4, 2]),
        (4, 4, [2, 4, 4, 2]),
        (7, 4, [2, 4, 4, 4, 4, 4, 2]),
        (2, 32, [2, 2]),
        (1, 8, [2]),
    ],
)
def test_dextra_groups(n, g_max, groups):
    assert dextra_groups(n, g_max) == groups


def test_dextra_plan_worked_example():
    # docs/architecture.md section 3: d_m 128, last encoder block (N 8, w 3.0,
    # g_max 4), P = D_o = 64
    plan = dextra_plan(128, 64, 64, 8, 3.0, 4)
    assert [s.as_tuple() for s in plan] == [
        (64, 64, 2),
        (128, 176, 4),
        (240, 280, 4),
        (344, 384, 4),
        (448, 384, 4),
        (448, 280, 4),
        (344, 176, 4),
        (240, 64, 2),
    ]


def test_dextra_plan_odd_depth_does_not_repeat_peak():
    plan = dextra_plan(256, 128, 128, 5, 2.0, 8)
    assert [s.groups for s in plan] == [2, 4, 8, 4, 2]
    # widths floor(linspace(128, 512, 3)) = 128, 320, 512 -> 128 320 512 320 (128)
    assert [s.out_features for s in plan] == [128, 320, 512, 320, 128]
    assert [s.in_features for s in plan] == [128, 256, 448, 640, 448]


def test_dextra_plan_widths_are_aligned():
    for spec in dextra_plan(384, 192, 192, 8, 2.571, 16)[:-1]:
        assert spec.out_features % 8 == 0
        assert spec.out_features % spec.groups == 0


@pytest.mark.parametrize(
    "d_m, params",
    [(128, 85_696), (256, 215_680), (384, 407_104), (512, 659_968), (640, 974_272)],
)
def test_embedding_dextra_params(d_m, params):
    # docs/architecture.md section 8, "emb DExTra (each)": DExTra(128, d_m/2, d_m,
    # 4, 2, g_max)
    assert dextra_params(128, d_m // 2, d_m, 4, 2.0, group_cap(d_m)) == params


def test_block_schedule_spec_example():
    blocks = block_schedule(8, 4, 8, 2.0)
    assert [b.depth for b in blocks] == [4, 4, 5, 5, 6, 6, 7, 8]
    assert [b.width_mult for b in blocks] == [
        2.0,
        2.143,
        2.286,
        2.429,
        2.571,
        2.714,
        2.857,
        3.0,
    ]


def test_block_schedule_uniform():
    blocks = block_schedule(6, 5, 5, 1.5)
    assert all(b.depth == 5 and b.width_mult == 1.5 for b in blocks)
    assert block_schedule(3, 4, 8, 2.0, scaling="uniform") == block_schedule(
        3, 4, 4, 2.0
    )


def test_block_schedule_other_range():
    # depth 3 -> 6 over 4 blocks: floor(linspace) = 3 4 5 6; w from 1 to 1 + 6/3 - 1 = 2
    blocks = block_schedule(4, 3, 6, 1.0)
    assert [b.depth for b in blocks] == [3, 4, 5, 6]
    assert [b.width_mult for b in blocks] == [1.0, 1.333, 1.667, 2.0]


@pytest.mark.parametrize(
    "base, ref, d_m, cap, expected",
    [
        (0.3, 1024, 128, 0.3, 0.04),
        (0.3, 1024, 256, 0.3, 0.07),
        (0.3, 1024, 384, 0.3, 0.11),
        (0.3, 1024, 512, 0.3, 0.15),
        (0.3, 1024, 640, 0.3, 0.19),
        (0.3, 1024, 2048, 0.3, 0.3),
        (0.1, 512, 640, 0.1, 0.1),
        (0.3, 512, 384, 0.3, 0.23),
    ],
)
def test_scaled_dropout(base, ref, d_m, cap, expected):
    assert scaled_dropout(base, ref, d_m, cap) == expected


@pytest.mark.parametrize(
    "dataset, d_m, expected",
    [
        # (dropout = ffn_dropout, attention_dropout, delight_dropout)
        ("wmt14_en_de", 128, (0.04, 0.01, 0.0)),
        ("wmt14_en_de", 512, (0.15, 0.05, 0.0)),
        ("wmt16_en_ro", 256, (0.07, 0.03, 0.05)),
        ("wmt16_en_ro", 640, (0.19, 0.06, 0.1)),
        ("wmt14_en_fr", 640, (0.06, 0.06, 0.0)),
        ("wmt14_en_fr", 128, (0.01, 0.01, 0.0)),
        ("iwslt14_de_en", 512, (0.3, 0.1, 0.1)),
        ("iwslt14_de_en", 256, (0.15, 0.05, 0.05)),
        ("iwslt14_en_de", 256, (0.15, 0.05, 0.05)),
        ("wmt16_ro_en", 256, (0.07, 0.03, 0.05)),
    ],
)
def test_preset_dropouts(dataset, d_m, expected):
    got = preset_dropouts(BENCHMARKS[dataset], d_m)
    assert got["dropout"] == got["ffn_dropout"]
    assert (
        got["dropout"],
        got["attention_dropout"],
        got["delight_dropout"],
    ) == expected
