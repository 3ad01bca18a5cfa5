"""Convert a checkpoint of the authors' DeLighT fork (github.com/sacmehta/delight,
fairseq 2020) into one this plugin loads.

    delight-convert-authors IN.pt OUT.pt
    python -m delight_fairseq.tools.convert_authors IN.pt OUT.pt

The model computes the same function in both codes; only the parameter names
and three layouts differ (docs/migrating.md has the whole table):

* a GLT's ``weights`` (g x in/g x out/g) is our ``weight``; its bias
  g x 1 x out/g becomes g x out/g; its ``normalization_fn`` is ``norm_*``;
* a one-group GLT is, in the authors' code, their plain Linear: weight
  out x in, which becomes 1 x in x out;
* every other Linear of theirs names its weight ``weights``.

The argparse flags carry over unchanged (this plugin kept the authors' names);
``--delight-authors-output-tying`` is switched on so that the output layer is
tied exactly when the authors' code tied it. The result is a fairseq checkpoint
with a ``cfg`` and without optimizer state: fine-tune it with
``--finetune-from-model`` (or ``--reset-optimizer``).
"""

import argparse
import logging
import os
import re
from argparse import Namespace
from dataclasses import fields
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor

import delight_fairseq  # noqa: F401  (registers the model and its presets)

from ..builder import build_model, sized_dictionary
from ..config import DeLighTConfig

# a fixed name: under ``python -m`` this module's __name__ is "__main__"
logger = logging.getLogger("delight_fairseq.tools.convert_authors")

#: the authors' benchmark presets: the same ``--arch`` names here
AUTHORS_PRESETS = tuple(
    f"delight_transformer_{pair}"
    for pair in ("wmt14_en_de", "wmt14_de_en", "wmt14_en_fr", "wmt14_fr_en",
                 "wmt16_en_ro", "wmt16_ro_en", "iwslt_de_en", "iwslt_en_de")
)  # fmt: skip
#: the authors' ``--arch`` names and the preset each becomes here
ARCHS = {"delight_transformer": "delight", **{a: a for a in AUTHORS_PRESETS}}

#: the authors' flags with no counterpart here, and the one value this plugin builds
AUTHORS_ONLY = {
    "norm_type": "ln",
    "act_type": "swish",
    "define_iclr": False,
    "adaptive_input": False,
    "adaptive_softmax_cutoff": None,
    "encoder_learned_pos": False,
    "decoder_learned_pos": False,
    "no_token_positional_embeddings": False,
    "no_scale_embedding": False,
    "no_cross_attention": False,
}

# the authors' key (a full match) -> ours, and how the tensor is relaid out
_SIDE = r"(?P<side>encoder|decoder)"
_BLOCK = r"(?P<block>(?:encoder|decoder)\.layers\.\d+)"
# a DExTra: the embedding's, an encoder block's, a decoder block's (``_sa``)
_UNIT = (
    r"(?P<unit>(?:encoder|decoder)\.(?:embed_tokens|layers\.\d+))\.dextra_layer(?:_sa)?"
)
_LIN = r"(?P<t>weights|bias)"  # the authors' Linear: ``weights`` is our ``weight``
_LN = r"(?P<n>weight|bias)"  # a LayerNorm: same names
RULES = [
    (_SIDE + r"\.embed_tokens\.map_layer\.weight", "{side}.embed_tokens.table.weight", None),
    (_UNIT + r"\.(?P<io>input|output)_layer\." + _LIN, "{unit}.dextra.{io}_layer.linear.{t}", None),
    (_UNIT + r"\.(?P<io>input|output)_layer\.normalization_fn\." + _LN, "{unit}.dextra.{io}_layer.layer_norm.{n}", None),
    (_UNIT + r"\.dextra_layers\.(?P<i>\d+)\.weights", "{unit}.dextra.glt_layers.{i}.weight", "glt_weight"),
    (_UNIT + r"\.dextra_layers\.(?P<i>\d+)\.bias", "{unit}.dextra.glt_layers.{i}.bias", "glt_bias"),
    (_UNIT + r"\.dextra_layers\.(?P<i>\d+)\.normalization_fn\." + _LN, "{unit}.dextra.glt_layers.{i}.norm_{n}", None),
    # q, k, v are packed in that order in both codes (chunks of the output)
    (_BLOCK + r"\.self_attn\.linear_kqv\." + _LIN, "{block}.self_attn.qkv_proj.{t}", None),
    (_BLOCK + r"\.encoder_attn\.linear_q\." + _LIN, "{block}.encoder_attn.q_proj.{t}", None),
    (_BLOCK + r"\.encoder_attn\.linear_kv\." + _LIN, "{block}.encoder_attn.kv_proj.{t}", None),
    (_BLOCK + r"\.(?P<a>self_attn|encoder_attn)\.out_proj\." + _LIN, "{block}.{a}.out_proj.{t}", None),
    (_BLOCK + r"\.self_attn_layer_norm\." + _LN, "{block}.self_attn_norm.layer_norm.{n}", None),
    (_BLOCK + r"\.encoder_attn_layer_norm\." + _LN, "{block}.encoder_attn_norm.layer_norm.{n}", None),
    (_BLOCK + r"\.final_layer_norm\." + _LN, "{block}.ffn_norm.layer_norm.{n}", None),
    (_BLOCK + r"\.(?P<fc>fc1|fc2)\." + _LIN, "{block}.ffn.{fc}.{t}", None),
    (_SIDE + r"\.layer_norm\." + _LN, "{side}.layer_norm.{n}", None),
    (r"decoder\.project_out_dim\.weights", "decoder.project_out_dim.weight", None),
    (r"decoder\.embed_out\.weights", "decoder.output_projection.weight", None),
    (_SIDE + r"\.version", "{side}.version", None),
    # old fairseq's sinusoidal-position buffers: no parameters, nothing to keep
    (_SIDE + r"\.embed_positions\.(?:_float_tensor|weights)", None, None),
]  # fmt: skip
_COMPILED = [(re.compile(p), new, relayout) for p, new, relayout in RULES]


#: the model's flags here (fairseq's dataclass adds ``_name``)
MODEL_FLAGS = tuple(f.name for f in fields(DeLighTConfig) if not f.name.startswith("_"))
#: the authors' model flags, with the same name and meaning here; the flags only
#: this plugin has keep their defaults, except the output tying (convert_args)
AUTHORS_FLAGS = (
    *(f"delight_emb_{k}" for k in ("map_dim", "out_dim", "width_mult", "max_groups",
                                   "dropout", "depth")),
    *(f"delight_{side}_{k}" for side in ("enc", "dec")
      for k in ("scaling", "layers", "min_depth", "max_depth", "width_mult",
                "ffn_red", "max_groups")),
    "no_glt_shuffle", "delight_dropout", "ffn_dropout", "pe_dropout", "dropout",
    "attention_dropout", "activation_dropout", "share_all_embeddings",
    "share_decoder_input_output_embed", "encoder_normalize_before",
    "decoder_normalize_before", "max_source_positions", "max_target_positions",
)  # fmt: skip


class ConversionError(ValueError):
    """The checkpoint cannot become a delight_transformer checkpoint; says why."""


def _examples(names: List[str], n: int = 5) -> str:
    shown = ", ".join(f"'{k}'" for k in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _glt_weight(key: str, w: Tensor) -> Tensor:
    if w.dim() == 3:  # g x in/g x out/g: the same layout here
        return w
    if w.dim() == 2:  # one group: the authors' plain Linear, out x in
        return w.t().unsqueeze(0).contiguous()
    raise ConversionError(
        f"'{key}' has shape {tuple(w.shape)}; a GLT weight is 2-D or 3-D"
    )


def _glt_bias(key: str, b: Tensor) -> Tensor:
    if b.dim() == 3 and b.size(1) == 1:  # g x 1 x out/g
        return b.squeeze(1)
    if b.dim() == 1:  # one group: the plain Linear's bias, out
        return b.unsqueeze(0)
    raise ConversionError(
        f"'{key}' has shape {tuple(b.shape)}; a GLT bias is g x 1 x out/g or out"
    )


RELAYOUTS = {"glt_weight": _glt_weight, "glt_bias": _glt_bias}


def rename(key: str):
    """(our key or None for a dropped buffer, relayout name), or None if unknown."""
    for pattern, new, relayout in _COMPILED:
        m = pattern.fullmatch(key)
        if m:
            if new is None:
                return None, None
            groups = {
                k: ("weight" if v == "weights" else v) for k, v in m.groupdict().items()
            }
            return new.format(**groups), relayout
    return None


def convert_state_dict(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """The authors' model state dict in this plugin's names and layouts."""
    converted: Dict[str, Tensor] = {}
    source: Dict[str, str] = {}
    unknown = []
    for key, value in state.items():
        found = rename(key)
        if found is None:
            unknown.append(key)
            continue
        new, relayout = found
        if new is None:
            continue
        if new in converted:
            raise ConversionError(
                f"'{source[new]}' and '{key}' both become '{new}': the checkpoint "
                "holds one parameter twice under the authors' two names"
            )
        source[new] = key
        converted[new] = RELAYOUTS[relayout](key, value) if relayout else value
    if unknown:
        raise ConversionError(
            f"{len(unknown)} parameters have no counterpart in this plugin: "
            f"{_examples(unknown)}. The converter knows the translation model of "
            "sacmehta/delight (fairseq/models/delight_transformer.py); a checkpoint "
            "from another model (the language model, adaptive softmax, learned "
            "positions) or a modified fork cannot be converted. If these entries hold "
            "nothing the model needs, delete them from state['model'] and rerun"
        )
    return converted


def _check_supported(args: Namespace) -> None:
    arch = getattr(args, "arch", None)
    if arch not in ARCHS:
        raise ConversionError(
            f"the checkpoint's --arch is {arch!r}; the converter takes the authors' "
            f"translation architectures: {', '.join(sorted(ARCHS))}"
        )
    problems = []
    for name, built in AUTHORS_ONLY.items():
        value = getattr(args, name, built)
        if value != built and not (built is False and not value):
            problems.append(
                f"--{name.replace('_', '-')} {value!r} (here always {built!r})"
            )
    if getattr(args, "decoder_normalize_before", False) and getattr(
        args, "no_decoder_final_norm", False
    ):
        problems.append(
            "--no-decoder-final-norm (here a pre-norm decoder always ends with one)"
        )
    if problems:
        raise ConversionError(
            "the checkpoint was trained with settings this plugin does not build: "
            + "; ".join(problems)
            + ". Its parameters would compute another function here"
        )


def convert_args(args: Namespace) -> Namespace:
    """The authors' flags as this plugin's: the arch mapped, shuffling and output
    tying as the authors' code built them, every model field present."""
    _check_supported(args)
    new = Namespace(**vars(args))
    if getattr(args, "glt_shuffle", None) is not None:
        new.no_glt_shuffle = not args.glt_shuffle  # what the authors' layers read
    absent = [
        name
        for name in AUTHORS_FLAGS
        if getattr(new, name, None) is None
        and not name.endswith("_max_groups")  # None: derived from d_m, as theirs
    ]
    if absent:
        raise ConversionError(
            "the checkpoint's args (state['args']) lack "
            + ", ".join("--" + n.replace("_", "-") for n in absent)
            + ": the authors' base_architecture always fills them; set them on the "
            "Namespace to the values the model was trained with and rerun"
        )
    new.arch = ARCHS[args.arch]
    # the authors' rule: --share-all-embeddings shares the table only
    new.delight_authors_output_tying = True
    enc_uniform = args.delight_enc_scaling == "uniform" or (
        args.delight_enc_min_depth == args.delight_enc_max_depth
    )
    if enc_uniform and getattr(args, "define_enc_layers", None) is not None:
        # the authors' uniform encoder counts its blocks with this flag
        new.delight_enc_layers = args.define_enc_layers
    for name in AUTHORS_ONLY:
        if hasattr(new, name):
            delattr(new, name)
    for name in (
        "delight_emb_width_mult",
        "delight_enc_width_mult",
        "delight_dec_width_mult",
    ):
        setattr(new, name, float(getattr(new, name)))
    return new


def check_against_model(args: Namespace, converted: Dict[str, Tensor]) -> None:
    """Build (on the meta device) the model these flags describe, with the
    checkpoint's vocabulary sizes, and compare every name and shape."""
    rows = {}
    for side in ("encoder", "decoder"):
        key = f"{side}.embed_tokens.table.weight"
        if key not in converted:
            raise ConversionError(
                f"the checkpoint has no {side} look-up table "
                f"('{side}.embed_tokens.map_layer.weight')"
            )
        rows[side] = converted[key].size(0)
    overrides = {
        name: getattr(args, name) for name in MODEL_FLAGS if hasattr(args, name)
    }
    if args.share_all_embeddings and rows["encoder"] != rows["decoder"]:
        raise ConversionError(
            f"--share-all-embeddings is set, but the tables have {rows['encoder']} and "
            f"{rows['decoder']} rows"
        )
    src = sized_dictionary(rows["encoder"])
    tgt = None if args.share_all_embeddings else sized_dictionary(rows["decoder"])
    with torch.device("meta"):
        model = build_model(args.arch, src, tgt, **overrides)
    own = {k: v.shape for k, v in model.state_dict().items()}
    missing = [k for k in own if k not in converted]
    extra = [k for k in converted if k not in own]
    reshaped = [k for k in own if k in converted and converted[k].shape != own[k]]
    details = []
    if missing:
        details.append(f"it lacks {_examples(missing)} (this plugin's names)")
    if extra:
        details.append(f"it has {_examples(extra)}, which that model lacks")
    if reshaped:
        k = reshaped[0]
        details.append(
            f"{len(reshaped)} shapes differ, e.g. '{k}': "
            f"{tuple(converted[k].shape)} converted, {tuple(own[k])} expected"
        )
    if details:
        raise ConversionError(
            "the checkpoint's parameters do not fit the model its own args describe: "
            + "; ".join(details)
            + ". Were state['args'] or state['model'] edited, or is it another fork?"
        )


def convert_checkpoint(state: dict) -> dict:
    """An authors' checkpoint (a dict as torch.load returns it) as a fairseq
    checkpoint of this plugin: model and cfg, no optimizer state."""
    from fairseq.checkpoint_utils import _upgrade_state_dict
    from omegaconf import OmegaConf

    args = state.get("args")
    if not isinstance(args, Namespace):
        mine = any(".dextra." in k for k in state.get("model", {}))
        raise ConversionError(
            "this checkpoint already uses this plugin's layout: load it as it is"
            if mine
            else "the checkpoint has no argparse Namespace in state['args'], which the "
            "authors' fork always writes: is it a checkpoint of sacmehta/delight?"
        )
    new_args = convert_args(args)
    model = convert_state_dict(state["model"])
    check_against_model(new_args, model)
    last = (state.get("optimizer_history") or [{}])[-1]
    out = {
        "args": new_args,
        "model": model,
        "optimizer_history": [
            {
                "criterion_name": last.get("criterion_name", "unknown"),
                "optimizer_name": last.get("optimizer_name", "unknown"),
                "lr_scheduler_state": last.get("lr_scheduler_state", {}),
                "num_updates": last.get("num_updates", 0),
            }
        ],
        "extra_state": {},
    }
    # fairseq's own upgrade of an argparse checkpoint (legacy flags, then cfg)
    out = _upgrade_state_dict(out)
    out["cfg"] = OmegaConf.to_container(out["cfg"], resolve=True, enum_to_str=True)
    out["args"] = None
    return out


def load(path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as err:
        raise ConversionError(
            f"{path} pickles an object this environment cannot rebuild ({err}). "
            "In the authors' environment, re-save only what is needed: "
            "torch.save({k: s[k] for k in ('args', 'model')}, 'small.pt')"
        ) from err


def convert_file(source, target) -> Path:
    """Convert ``source`` into ``target``, written whole or not at all."""
    state = load(source)
    out = convert_checkpoint(state)
    dropped = [k for k in ("last_optimizer_state",) if k in state]
    tmp = Path(str(target) + ".tmp")
    torch.save(out, tmp)
    os.replace(tmp, target)
    logger.info(
        "wrote %s: %d tensors, --arch %s%s",
        target,
        len(out["model"]),
        out["cfg"]["model"]["_name"],
        " (optimizer state dropped)" if dropped else "",
    )
    return Path(target)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="delight-convert-authors",
        description="convert a checkpoint of the authors' DeLighT fork "
        "(sacmehta/delight) into one of this plugin (--user-dir delight_fairseq)",
    )
    parser.add_argument("input", help="the authors' checkpoint (.pt)")
    parser.add_argument("output", help="where to write the converted checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(  # force: fairseq's import has configured logging already
        level=logging.INFO,
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        force=True,
    )
    try:
        convert_file(args.input, args.output)
    except ConversionError as err:
        raise SystemExit(f"delight-convert-authors: {args.input}: {err}") from err


if __name__ == "__main__":
    main()
