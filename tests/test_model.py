"""Every --arch builds, and each preset applies its catalog record's rules
(docs/architecture.md sections 5 and 7)."""

import argparse

import pytest
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

from delight_fairseq.catalog import BENCHMARKS
from delight_fairseq.config import DeLighTConfig
from delight_fairseq.model import preset_dropouts

from helpers import build, n_params

ARCHS = sorted(
    a for a, m in ARCH_MODEL_REGISTRY.items() if m.__module__.startswith("delight")
)
# each paper preset and the benchmark whose dropout rule it follows
# (docs/architecture.md section 5)
PRESETS = {
    "delight_transformer_iwslt_de_en": "iwslt14_de_en",
    "delight_transformer_iwslt_en_de": "iwslt14_de_en",
    "delight_transformer_wmt16_en_ro": "wmt16_en_ro",
    "delight_transformer_wmt16_ro_en": "wmt16_en_ro",
    "delight_transformer_wmt14_en_de": "wmt14_en_de",
    "delight_transformer_wmt14_de_en": "wmt14_en_de",
    "delight_transformer_wmt14_en_fr": "wmt14_en_fr",
    "delight_transformer_wmt14_fr_en": "wmt14_en_fr",
}


def test_all_architectures_are_registered():
    # the paper's presets, and the catalog's small-data recipe
    small = "delight_transformer_multi30k_de_en"
    assert set(ARCHS) == {"delight", "delight_transformer", *PRESETS, small}


def test_small_data_preset_follows_its_record():
    """Multi30k's preset: 4 + 4 blocks of depth 3 -> 6 (not the paper's 4 -> 8),
    d_m 192 unless given, the record's dropouts, one shared table."""
    cfg = build("delight_transformer_multi30k_de_en", src_vocab=40).cfg
    assert cfg.delight_emb_out_dim == 192
    assert (cfg.delight_enc_layers, cfg.delight_dec_layers) == (4, 4)
    assert (cfg.delight_enc_min_depth, cfg.delight_enc_max_depth) == (3, 6)
    assert cfg.delight_emb_depth == 3
    assert cfg.share_all_embeddings and cfg.share_decoder_input_output_embed
    drops = preset_dropouts(BENCHMARKS["multi30k_de_en"], 192)
    assert {name: getattr(cfg, name) for name in drops} == drops


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_and_runs(arch):
    model = build(arch, src_vocab=40, delight_emb_out_dim=64).eval()
    import torch

    src = torch.randint(4, 40, (2, 5))
    out, extra = model(src, torch.tensor([5, 5]), torch.randint(4, 40, (2, 3)))
    assert out.shape == (2, 3, 40)
    assert extra["attn"][0].shape == (2, 3, 5)


@pytest.mark.parametrize("arch", sorted(PRESETS))
@pytest.mark.parametrize("d_m", [128, 256, 512])
def test_preset_rules(arch, d_m):
    model = build(arch, src_vocab=40, delight_emb_out_dim=d_m)
    cfg = model.cfg
    assert cfg.delight_enc_layers == cfg.delight_enc_max_depth == 8
    assert cfg.delight_dec_layers == cfg.delight_dec_max_depth == 8
    assert cfg.delight_emb_depth == cfg.delight_dec_min_depth == 4
    assert cfg.delight_emb_width_mult == cfg.delight_enc_width_mult == 2.0
    drops = preset_dropouts(BENCHMARKS[PRESETS[arch]], d_m)
    for name, value in drops.items():
        assert getattr(cfg, name) == value, name
    assert (cfg.pe_dropout, cfg.delight_emb_dropout, cfg.activation_dropout) == (
        0.1,
        0.1,
        0.0,
    )
    assert cfg.share_decoder_input_output_embed
    assert cfg.share_all_embeddings == ("iwslt" not in arch)


def test_preset_follows_changed_depths():
    model = build(
        "delight_transformer_wmt14_en_de",
        src_vocab=40,
        delight_emb_out_dim=128,
        delight_enc_max_depth=6,
        delight_dec_min_depth=3,
        delight_dec_max_depth=5,
        delight_enc_width_mult=1.5,
    )
    cfg = model.cfg
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (6, 5)
    assert cfg.delight_emb_depth == 3 and cfg.delight_emb_width_mult == 1.5


def test_base_is_the_authors_base_architecture():
    cfg = build("delight", src_vocab=40, delight_enc_max_depth=6).cfg
    defaults = DeLighTConfig()
    # the base keeps 8 blocks, an embedding DExTra of depth 4 and width 2
    assert (cfg.delight_enc_layers, cfg.delight_dec_layers) == (8, 8)
    assert (cfg.delight_emb_depth, cfg.delight_emb_width_mult) == (4, 2.0)
    assert cfg.delight_emb_out_dim == defaults.delight_emb_out_dim == 128
    assert cfg.dropout == cfg.delight_dropout == cfg.ffn_dropout == 0.1
    assert not cfg.share_all_embeddings


def test_explicit_flags_win_over_presets():
    cfg = build(
        "delight_transformer_wmt14_en_de",
        src_vocab=40,
        delight_emb_out_dim=128,
        dropout=0.25,
        delight_emb_depth=6,
    ).cfg
    assert cfg.dropout == 0.25 and cfg.delight_emb_depth == 6
    assert cfg.ffn_dropout == 0.04  # still the width rule


@pytest.mark.parametrize("arch", ARCHS)
def test_architecture_functions_are_idempotent(arch):
    args = argparse.Namespace(delight_emb_out_dim=256)
    ARCH_CONFIG_REGISTRY[arch](args)
    once = dict(vars(args))
    ARCH_CONFIG_REGISTRY[arch](args)
    assert vars(args) == once


def test_every_config_field_has_help():
    from dataclasses import fields

    for f in fields(DeLighTConfig):
        if f.name != "_name":  # fairseq's own registry key
            assert f.metadata.get("help"), f.name


def test_build_logs_a_summary(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="delight_fairseq.model"):
        model = build("delight", src_vocab=40)
    line = [r.message for r in caplog.records if r.message.startswith("DeLighT:")][0]
    assert "encoder 8 blocks (DExTra depths [4, 4, 5, 5, 6, 6, 7, 8])" in line
    assert f"parameters {n_params(model):,}" in line


def test_the_plugin_imports_no_tooling():
    """``--user-dir delight_fairseq`` loads the model, criterion and compat code:
    never the tooling (delight_fairseq.tools) nor its dependencies."""
    import subprocess
    import sys

    code = (
        "import sys, delight_fairseq\n"
        "bad = [m for m in sys.modules if m.startswith('delight_fairseq.tools')\n"
        "       or m in ('sacremoses', 'subword_nmt', 'sentencepiece')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
