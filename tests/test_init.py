"""Initialization statistics and the tying rules, against the authors' formulas.

Every parameter of a built model falls into one family, and each family's
starting distribution is pinned by its formula (issue: training fidelity):
- plain Linear (DExTra input/output layers, attention, light FFN, the untied
  output layer): Xavier-uniform, std sqrt(2 / (in + out)), bias 0;
- GLT with g > 1 groups: Xavier-uniform on the g x in/g x out/g tensor, as the
  authors' code applies it: fan_in = in/g * out/g, fan_out = g * out/g;
- GLT with one group: the authors' plain Linear(in, out), std sqrt(2 / (in + out));
- LayerNorm (and the GLT's shared group norm): weight 1, bias 0;
- look-up table: N(0, map_dim^-0.5), padding row 0.
"""

import math

import pytest
import torch
from torch import nn

from delight_fairseq.group_linear import GroupLinear

from helpers import build


def xavier_std(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2.0 / (fan_in + fan_out))


def expected_std(module: nn.Module, name: str) -> float:
    """The std the authors' init gives this weight (None for a constant)."""
    if isinstance(module, GroupLinear) and name == "weight":
        g, i, o = module.groups, module.in_features, module.out_features
        if g == 1:
            return xavier_std(i, o)
        return xavier_std(i // g * o // g, g * o // g)
    if isinstance(module, nn.Linear) and name == "weight":
        return xavier_std(module.in_features, module.out_features)
    if isinstance(module, nn.Embedding):
        return module.embedding_dim**-0.5
    return None


def expected_constant(module: nn.Module, name: str) -> float:
    if isinstance(module, nn.LayerNorm) or name.startswith("norm_"):
        return 1.0 if name.endswith("weight") else 0.0
    if name == "bias":
        return 0.0
    raise AssertionError(f"no init rule for {type(module).__name__}.{name}")


def check_init(model: nn.Module) -> int:
    """Assert every parameter's init; returns how many were checked."""
    checked = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            std = expected_std(module, name)
            if std is None:
                want = expected_constant(module, name)
                assert torch.all(p == want), f"{type(module).__name__}.{name}"
            else:
                values = p.detach().flatten()
                if isinstance(module, nn.Embedding):
                    assert torch.all(p[module.padding_idx] == 0)
                    values = torch.cat(
                        [p[: module.padding_idx], p[module.padding_idx + 1 :]]
                    ).flatten()
                else:  # uniform on [-a, a] with a = sqrt(3) std
                    assert values.abs().max() <= math.sqrt(3) * std * (1 + 1e-6)
                # the sample std of n draws is off by about 0.5 / sqrt(n) (relative)
                tol = 4.0 / math.sqrt(values.numel()) + 0.01
                measured = values.std().item()
                assert abs(measured / std - 1) < tol, (
                    f"{type(module).__name__}.{name} {tuple(p.shape)}: "
                    f"std {measured:.5f}, formula {std:.5f}"
                )
            checked += 1
    return checked


@pytest.mark.parametrize(
    "arch, overrides",
    [
        ("delight_transformer_wmt16_en_ro", {"delight_emb_out_dim": 128}),
        ("delight_transformer_iwslt_de_en", {"delight_emb_out_dim": 256}),
        ("delight", {}),
    ],
)
def test_every_parameter_starts_as_the_authors_formula(arch, overrides):
    torch.manual_seed(0)
    tgt_vocab = 300 if arch.endswith("iwslt_de_en") else None
    model = build(arch, src_vocab=400, tgt_vocab=tgt_vocab, **overrides)
    assert check_init(model) == len(list(model.parameters()))


@pytest.mark.parametrize("d_m, max_groups", [(32, None), (128, 1)])
def test_one_group_glt_starts_as_a_plain_linear(d_m, max_groups):
    """Group cap 1 (d_m <= 32, or --delight-*-max-groups 1): the weight is kept
    as 1 x in x out but drawn with the plain Linear's fans."""
    torch.manual_seed(0)
    caps = {} if max_groups is None else {
        f"delight_{s}_max_groups": max_groups for s in ("emb", "enc", "dec")
    }  # fmt: skip
    model = build("delight", delight_emb_out_dim=d_m, **caps)
    glts = [m for m in model.modules() if isinstance(m, GroupLinear)]
    assert glts and all(m.groups == 1 for m in glts)
    check_init(model)
    big = max(glts, key=lambda m: m.weight.numel())
    assert big.weight.std().item() > 2 * xavier_std(
        big.in_features * big.out_features, big.out_features
    )


def test_untied_output_layer_is_xavier_uniform():
    """No sharing: the output layer is the authors' Xavier-uniform V x map_dim
    Linear, with about 2x smaller starting logits than the table's N(0, 128^-0.5)
    at V = 1,000."""
    torch.manual_seed(0)
    model = build("delight", src_vocab=1000)
    out = model.decoder.output_projection
    assert out is not None and out.weight.shape == (1000, 128)
    assert out.weight is not model.decoder.embed_tokens.table.weight
    std = out.weight.std().item()
    assert abs(std / xavier_std(128, 1000) - 1) < 0.02
    assert 1.9 < 128**-0.5 / std < 2.2


def output_weight(model):
    dec = model.decoder
    if dec.output_projection is None:
        return dec.embed_tokens.table.weight
    return dec.output_projection.weight


@pytest.mark.parametrize(
    "share_all, share_dec, authors, tied_to_decoder_table, tables",
    [
        (False, False, False, False, 2),
        (False, True, False, True, 2),
        (True, True, False, True, 1),
        (True, False, False, True, 1),  # fairseq's rule: share-all ties the output
        (True, False, True, False, 1),  # the authors' rule, asked for explicitly
        (True, True, True, True, 1),
    ],
)
def test_tying_rules(share_all, share_dec, authors, tied_to_decoder_table, tables):
    model = build(
        "delight",
        src_vocab=200,
        share_all_embeddings=share_all,
        share_decoder_input_output_embed=share_dec,
        delight_authors_output_tying=authors,
    )
    enc_table = model.encoder.embed_tokens.table.weight
    dec_table = model.decoder.embed_tokens.table.weight
    assert (enc_table is dec_table) == (tables == 1)
    assert (output_weight(model) is dec_table) == tied_to_decoder_table
    unique = {id(p) for p in model.parameters()}
    n_tables = len({id(enc_table), id(dec_table)})
    n_out = 0 if tied_to_decoder_table else 1
    assert n_tables == tables
    # each table or output layer of V x 128 is counted once
    vocab_params = sum(p.numel() for p in model.parameters() if p.shape == (200, 128))
    assert vocab_params == 200 * 128 * (tables + n_out)
    assert len(unique) == len(list(model.parameters()))
