"""Explain why a checkpoint does not fit the model built for it.

torch's own message for a mismatched state dict is a wall of parameter names.
The usual causes are few: the checkpoint holds another architecture, the data
directory's dictionaries are not the ones the model was trained with, or the
DeLighT flags differ from the checkpoint's. This names the cause and the fix.
"""

from typing import Dict, List

from torch import Tensor, nn

# look-up tables and softmax weights: their rows are the dictionary entries
VOCAB_PARAMETERS = {
    "encoder.embed_tokens.table.weight": "source",
    "decoder.embed_tokens.table.weight": "target",
    "decoder.output_projection.weight": "target",
}


class CheckpointMismatch(ValueError):
    """The checkpoint's parameters do not fit the model built from the flags and data."""


def _examples(names: List[str], n: int = 3) -> str:
    shown = ", ".join(f"'{k}'" for k in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def check_state_dict(model: nn.Module, state: Dict[str, Tensor]) -> None:
    """Raise :class:`CheckpointMismatch` with the cause, or return if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    # every DeLighT model has DExTra units; another architecture has none
    if not any(".dextra." in k for k in state):
        raise CheckpointMismatch(
            "the checkpoint does not hold a DeLighT model: none of its parameters "
            f"({_examples(unexpected)}) belong to delight_transformer. Load it with the "
            "architecture it was trained with, or start from a DeLighT checkpoint"
        )

    for name, side in VOCAB_PARAMETERS.items():
        if name in own and name in state and own[name].shape[0] != state[name].shape[0]:
            raise CheckpointMismatch(
                f"the checkpoint was trained with a {side} dictionary of "
                f"{state[name].shape[0]} entries, but the data directory's {side} "
                f"dictionary has {own[name].shape[0]}: use the data-bin (dict.*.txt) the "
                "model was trained with"
            )

    reshaped = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or reshaped:
        details = []
        if reshaped:
            k = reshaped[0]
            details.append(
                f"{len(reshaped)} parameters have other shapes (e.g. '{k}': "
                f"{tuple(state[k].shape)} in the checkpoint, {tuple(own[k].shape)} here)"
            )
        if missing:
            details.append(f"the checkpoint lacks {_examples(missing)}")
        if unexpected:
            details.append(
                f"it has parameters this model lacks: {_examples(unexpected)}"
            )
        raise CheckpointMismatch(
            "the checkpoint's DeLighT configuration differs from the model's: "
            + "; ".join(details)
            + ". Use the checkpoint's own flags (--delight-emb-out-dim, depths, width "
            "multipliers, --share-all-embeddings ...), or drop the overriding flags"
        )
