"""delight-convert-authors: checkpoints of the authors' fork (sacmehta/delight)
become checkpoints that fairseq loads with this plugin.

The authors' layout is written here by hand, from their modules
(fairseq/models/delight_transformer.py, fairseq/modules/delight_transformer_layer.py
and single_head_attention.py, fairseq/delight_modules/dextra_unit.py, dextra_emb.py
and nn_functions.py), independently of the converter's rules: a model of ours
goes out in that layout (``to_authors``) and must come back bit for bit.
"""

import argparse
import re

import pytest
import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils

from delight_fairseq.group_linear import GroupLinear
from delight_fairseq.tools.convert_authors import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    main,
)

from helpers import TINY_SHAPE, build, make_dictionary

TINY = dict(TINY_SHAPE, delight_emb_out_dim=64)
CASES = {
    # one table, tied output; one-group GLTs in every encoder DExTra
    "shared": dict(
        src_vocab=30,
        share_all_embeddings=True,
        share_decoder_input_output_embed=True,
        delight_enc_max_groups=1,
    ),
    # one table, a separate output layer (the authors' --share-all-embeddings alone)
    "shared_table_untied": dict(
        src_vocab=30, share_all_embeddings=True, delight_authors_output_tying=True
    ),
    # two tables, untied output, pre-norm stacks; one-group embedding DExTras
    "separate": dict(
        src_vocab=30,
        tgt_vocab=25,
        encoder_normalize_before=True,
        decoder_normalize_before=True,
        delight_emb_max_groups=1,
    ),
}

# ours -> the authors', in this order, for everything but GLT layers
RENAMES = [
    ("embed_tokens.table.", "embed_tokens.map_layer."),
    ("_layer.linear.", "_layer."),  # DExTra input/output layer: one Linear of theirs
    ("_layer.layer_norm.", "_layer.normalization_fn."),
    ("self_attn_norm.layer_norm.", "self_attn_layer_norm."),
    ("encoder_attn_norm.layer_norm.", "encoder_attn_layer_norm."),
    ("ffn_norm.layer_norm.", "final_layer_norm."),
    (".ffn.", "."),
    (".qkv_proj.", ".linear_kqv."),
    (".q_proj.", ".linear_q."),
    (".kv_proj.", ".linear_kv."),
    ("output_projection.", "embed_out."),
]
# the authors' Linear class (nn_functions.Linear) names its weight ``weights``
THEIR_LINEARS = (
    "input_layer", "output_layer", "linear_kqv", "linear_q", "linear_kv", "out_proj",
    "fc1", "fc2", "project_out_dim", "embed_out",
)  # fmt: skip


def to_authors(ours):
    """Our state dict in the authors' names and layouts."""
    theirs = {}
    for key, value in ours.items():
        k = re.sub(
            r"^decoder\.layers\.(\d+)\.dextra\.",
            r"decoder.layers.\1.dextra_layer_sa.",
            key,
        )
        k = k.replace(".dextra.", ".dextra_layer.")
        if ".glt_layers." in k:
            k = k.replace(".glt_layers.", ".dextra_layers.")
            one_group = value.dim() > 1 and value.size(0) == 1
            if ".norm_" in k:
                k = k.replace(".norm_", ".normalization_fn.")
            elif k.endswith(".weight"):
                # g x in/g x out/g; one group is their plain Linear: out x in
                k, value = k + "s", (value[0].t() if one_group else value)
            else:  # bias: g x 1 x out/g; one group: out
                value = value[0] if one_group else value.unsqueeze(1)
        else:
            for ours_name, their_name in RENAMES:
                k = k.replace(ours_name, their_name)
            if k.endswith(".weight") and k.split(".")[-2] in THEIR_LINEARS:
                k += "s"
        theirs[k] = value.clone()
    for side in ("encoder", "decoder"):  # old fairseq's sinusoidal-position buffer
        theirs[f"{side}.embed_positions._float_tensor"] = torch.FloatTensor(1)
    return theirs


def tiny_model(case):
    flags = dict(CASES[case])
    torch.manual_seed(0)
    model = build(**TINY, **flags)
    with torch.no_grad():  # biases and norms start at 0 and 1: make every entry count
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


# the model flags of the authors' add_args / base_architecture that this
# plugin shares, name for name
AUTHORS_MODEL_FLAGS = """
    delight_emb_map_dim delight_emb_out_dim delight_emb_width_mult
    delight_emb_max_groups delight_emb_dropout delight_emb_depth
    delight_enc_scaling delight_enc_layers delight_enc_min_depth delight_enc_max_depth
    delight_enc_width_mult delight_enc_ffn_red delight_enc_max_groups
    delight_dec_scaling delight_dec_layers delight_dec_min_depth delight_dec_max_depth
    delight_dec_width_mult delight_dec_ffn_red delight_dec_max_groups
    no_glt_shuffle delight_dropout ffn_dropout pe_dropout dropout attention_dropout
    activation_dropout share_all_embeddings share_decoder_input_output_embed
    encoder_normalize_before decoder_normalize_before
    max_source_positions max_target_positions
""".split()


def authors_args(model, data, arch="delight_transformer"):
    """The Namespace the authors' fairseq-train stores in state['args']."""
    cfg = model.cfg
    flags = {name: getattr(cfg, name) for name in AUTHORS_MODEL_FLAGS}
    flags["delight_emb_width_mult"] = int(cfg.delight_emb_width_mult)  # type=int there
    return argparse.Namespace(
        arch=arch, task="translation", data=str(data), source_lang="src",
        target_lang="tgt", left_pad_source=True, left_pad_target=False,
        criterion="label_smoothed_cross_entropy", label_smoothing=0.1,
        optimizer="adam", adam_betas="(0.9, 0.98)", lr=[0.0007], min_lr=1e-9,
        lr_scheduler="inverse_sqrt", warmup_updates=4000, max_tokens=4096, seed=1,
        # the authors' own flags, as their base_architecture fills them
        glt_shuffle=not cfg.no_glt_shuffle,
        norm_type="ln", act_type="swish", define_iclr=False, adaptive_input=False,
        adaptive_softmax_cutoff=None, adaptive_softmax_dropout=0,
        adaptive_softmax_factor=4, tie_adaptive_weights=False, tie_adaptive_proj=False,
        print_stats=False, src_len_ps=20, tgt_len_ps=20, encoder_learned_pos=False,
        decoder_learned_pos=False, no_token_positional_embeddings=False,
        no_scale_embedding=False,
        **flags,
    )  # fmt: skip


def authors_checkpoint(model, data, **arg_changes):
    args = authors_args(model, data)
    for name, value in arg_changes.items():
        setattr(args, name, value)
    return {
        "args": args,
        "model": to_authors(model.state_dict()),
        "optimizer_history": [
            {
                "criterion_name": "LabelSmoothedCrossEntropyCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": 3.5},
                "num_updates": 1234,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 7}, "val_loss": 3.5},
        "last_optimizer_state": {"state": {}, "param_groups": []},
    }


def data_dir(tmp_path, model):
    """A data-bin with only the dictionaries, as the task's setup reads them."""
    data = tmp_path / "data-bin"
    data.mkdir()
    make_dictionary(len(model.encoder.dictionary)).save(str(data / "dict.src.txt"))
    make_dictionary(len(model.decoder.dictionary)).save(str(data / "dict.tgt.txt"))
    return data


def batch(model):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, len(model.encoder.dictionary), (3, 7), generator=g)
    src[0, :2] = model.encoder.padding_idx  # fairseq left-pads sources
    prev = torch.randint(4, len(model.decoder.dictionary), (3, 5), generator=g)
    prev[:, 0] = model.decoder.dictionary.eos()
    return src, torch.tensor([5, 7, 7]), prev


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_through_the_cli_and_fairseqs_loader(tmp_path, case):
    model = tiny_model(case)
    data = data_dir(tmp_path, model)
    source, target = tmp_path / "authors.pt", tmp_path / "converted.pt"
    torch.save(authors_checkpoint(model, data), source)

    main([str(source), str(target)])

    # (a) every tensor comes back exactly, under our names and layouts
    ours = model.state_dict()
    converted = torch.load(target, weights_only=False)["model"]
    assert converted.keys() == ours.keys()
    for name, value in ours.items():
        assert torch.equal(converted[name], value), name

    # fairseq's own loader, as fairseq-generate uses it
    models, cfg, _ = checkpoint_utils.load_model_ensemble_and_task([str(target)])
    loaded = models[0].eval()
    assert type(loaded) is type(model)
    assert cfg.model._name == "delight"
    for name, value in ours.items():
        assert torch.equal(loaded.state_dict()[name], value), name
    tied = loaded.decoder.output_projection is None
    assert tied == (case == "shared")

    # (b) the same logits
    with torch.no_grad():
        expected, _ = model(*batch(model))
        got, _ = loaded(*batch(model))
    assert torch.equal(got, expected)


def test_the_authors_layout_written_here(tmp_path):
    """The facts to_authors encodes, spelled out: one-group GLTs are out x in
    Linears, grouped ones keep g x in/g x out/g with a g x 1 x out/g bias."""
    theirs = to_authors(tiny_model("shared").state_dict())
    enc = "encoder.layers.0.dextra_layer.dextra_layers"
    assert theirs[f"{enc}.1.weights"].shape == (32, 64)  # GLT(64 -> 32, g=1)
    assert theirs[f"{enc}.1.bias"].shape == (32,)
    dec = "decoder.layers.0.dextra_layer_sa.dextra_layers"
    assert theirs[f"{dec}.0.weights"].shape == (2, 16, 16)  # GLT(32 -> 32, g=2)
    assert theirs[f"{dec}.0.bias"].shape == (2, 1, 16)
    assert theirs[f"{dec}.0.normalization_fn.weight"].shape == (16,)
    assert theirs["decoder.layers.0.self_attn.linear_kqv.weights"].shape == (96, 32)
    assert theirs["decoder.layers.0.encoder_attn.linear_kv.weights"].shape == (64, 64)
    assert "encoder.embed_tokens.map_layer.weight" in theirs


def authors_glt(x, weights, bias, norm_weight, norm_bias, shuffle):
    """The authors' GLT on x (N x in), as nn_functions.GroupLinear computes it; a
    2-D weight is their Linear with LayerNorm and swish (a one-group GLT)."""
    if weights.dim() == 2:
        y = F.linear(x, weights, bias)
        return F.silu(F.layer_norm(y, (y.size(-1),), norm_weight, norm_bias))
    n, g = x.size(0), weights.size(0)
    y = torch.bmm(x.view(n, g, -1).transpose(0, 1), weights) + bias  # g x N x out/g
    y = y.permute(1, 2, 0).reshape(n, g, -1) if shuffle else y.transpose(0, 1)
    y = F.silu(F.layer_norm(y, (y.size(-1),), norm_weight, norm_bias))
    return y.reshape(n, -1)


@pytest.mark.parametrize("groups,shuffle", [(1, False), (4, False), (4, True)])
def test_a_glt_computes_the_authors_function(groups, shuffle):
    torch.manual_seed(groups)
    ours = GroupLinear(32, 48, groups, shuffle=shuffle)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0.0, 0.5)
    prefix = "encoder.layers.0.dextra_layer.dextra_layers.0."
    theirs = {
        k[len(prefix) :]: v
        for k, v in to_authors(
            {
                f"encoder.layers.0.dextra.glt_layers.0.{n}": p
                for n, p in ours.state_dict().items()
            }
        ).items()
        if k.startswith(prefix)
    }
    x = torch.randn(10, 32)
    expected = authors_glt(
        x,
        theirs["weights"],
        theirs["bias"],
        theirs["normalization_fn.weight"],
        theirs["normalization_fn.bias"],
        shuffle and groups > 1,
    )
    torch.testing.assert_close(ours(x).detach(), expected)
    # and the converter turns their tensors back into the same layer
    back = convert_state_dict({prefix + k: v for k, v in theirs.items()})
    again = GroupLinear(32, 48, groups, shuffle=shuffle)
    again.load_state_dict({k.rsplit(".", 1)[-1]: v for k, v in back.items()})
    torch.testing.assert_close(again(x).detach(), expected)


@pytest.fixture
def authors_state(tmp_path):
    model = tiny_model("separate")
    return authors_checkpoint(model, data_dir(tmp_path, model))


def test_an_unknown_key_is_named(authors_state):
    authors_state["model"]["decoder.adaptive_softmax.head.weights"] = torch.zeros(2)
    with pytest.raises(
        ConversionError, match="'decoder.adaptive_softmax.head.weights'"
    ):
        convert_checkpoint(authors_state)


def test_a_missing_key_is_named(authors_state):
    del authors_state["model"]["encoder.layers.1.fc2.bias"]
    with pytest.raises(
        ConversionError, match=r"lacks 'encoder\.layers\.1\.ffn\.fc2\.bias'"
    ):
        convert_checkpoint(authors_state)


def test_args_that_describe_other_parameters_are_refused(authors_state):
    authors_state["args"].delight_enc_max_depth = 4  # deeper blocks than the tensors
    with pytest.raises(ConversionError, match="do not fit the model its own args"):
        convert_checkpoint(authors_state)


@pytest.mark.parametrize(
    "flag,value",
    [("norm_type", "bn"), ("act_type", "gelu"), ("define_iclr", True),
     ("encoder_learned_pos", True), ("arch", "delight_transformer_lm_wiki103")],
)  # fmt: skip
def test_settings_this_plugin_does_not_build_are_refused(authors_state, flag, value):
    setattr(authors_state["args"], flag, value)
    with pytest.raises(ConversionError, match=f"--{flag.replace('_', '-')}"):
        convert_checkpoint(authors_state)


def test_a_missing_flag_is_named(authors_state):
    del authors_state["args"].pe_dropout
    with pytest.raises(ConversionError, match="lack --pe-dropout"):
        convert_checkpoint(authors_state)


def test_a_uniform_encoder_counts_its_blocks_as_the_authors_did(tmp_path):
    """The authors' uniform encoder builds --define-enc-layers blocks."""
    torch.manual_seed(0)
    model = build(
        **{**TINY, "delight_enc_min_depth": 2, "delight_enc_max_depth": 2}, src_vocab=30
    )
    state = authors_checkpoint(
        model, data_dir(tmp_path, model), delight_enc_layers=8, define_enc_layers=2
    )
    converted = convert_checkpoint(state)
    assert converted["cfg"]["model"]["delight_enc_layers"] == 2
    assert converted["model"].keys() == model.state_dict().keys()


def test_the_cli_exits_with_the_reason(tmp_path, authors_state):
    authors_state["model"]["encoder.layers.0.extra.weights"] = torch.zeros(2)
    source, target = tmp_path / "authors.pt", tmp_path / "out.pt"
    torch.save(authors_state, source)
    with pytest.raises(SystemExit, match="'encoder.layers.0.extra.weights'"):
        main([str(source), str(target)])
    assert not target.exists()


def test_our_own_checkpoint_is_recognised():
    ours = {"args": None, "cfg": {}, "model": {"encoder.layers.0.dextra.x": 0}}
    with pytest.raises(ConversionError, match="already uses this plugin's layout"):
        convert_checkpoint(ours)
