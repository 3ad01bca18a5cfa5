"""``--delight-compile``: each block's DExTra unit through ``torch.compile``
(docs/architecture.md section 12).

What is compiled: the DExTra unit of every encoder and decoder block, i.e. its
input layer, GLT stack, mixers and output layer, the bulk of a block's small
kernels, as one graph for the forward and one for the backward. Attention (with
its masks and fairseq's incremental state), the FFN and the embedding's DExTra
stay eager. Inductor generates Triton kernels on a GPU and C++ on CPU (a C++
compiler is needed there; the fused GLT kernel of fused.py steps aside).

Lazily: nothing is compiled when a model is built. The first forward of a unit
creates (or finds) the compiled callable for its structure here, in this
module, so that no compiled wrapper is ever an attribute of a module: state
dicts, pickles and deep copies (fairseq's EMA) are those of the eager model.

Sharing: units of one structure (widths, GLT groups, shuffle, dropout) share a
compiled callable. Dynamo lifts their parameters to graph inputs, so one graph
serves every such unit. Each structure keeps its own cache of compiled graphs
(``isolate_recompiles``) with its own recompile limit, so a deep model with many
block shapes does not fill one cache and silently fall back to eager.

Dynamic shapes: a unit sees its input flattened to N x D_in rows (N = T x B),
so the row count is the only size that varies, and it is symbolic from the
first compilation (``dynamic=True``). fairseq's batches, each with its own T and
B, then reuse one graph. Per structure and mode (training or not, gradients on
or off, dtype) there is one graph for every N >= 2 and one for N = 1, which
Dynamo always specializes (a decoding step with a single hypothesis).
"""

import functools
import inspect
import logging
import threading
from typing import Callable, Dict, Tuple

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

#: Graphs one structure may compile before Dynamo runs it eagerly. The usual
#: use needs 4: (training with gradients, evaluation without) x (N >= 2, N = 1).
RECOMPILE_LIMIT = 8

_compiled: Dict[Tuple, Callable] = {}
_lock = threading.Lock()


def _rows(unit: nn.Module, x: Tensor) -> Tensor:
    """What Dynamo traces: ``unit`` on N x D_in rows."""
    return unit(x)


def structure(unit: nn.Module) -> Tuple:
    """What makes two DExTra units share compiled graphs."""
    glts = tuple(
        (glt.in_features, glt.out_features, glt.groups, glt.shuffle, glt.dropout)
        for glt in unit.glt_layers
    )
    return (
        unit.in_features,
        unit.proj_features,
        unit.out_features,
        unit.input_layer.dropout,
        glts,
    )


@functools.lru_cache(maxsize=None)
def _options() -> dict:
    """Per-structure caches where this torch has them (2.13 and later)."""
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        return {"isolate_recompiles": True, "recompile_limit": RECOMPILE_LIMIT}
    logger.warning(
        "DeLighT: this torch (%s) has no torch.compile(isolate_recompiles=...): "
        "--delight-compile's DExTra structures share one cache, limited by "
        "torch._dynamo.config.recompile_limit (raise it if the log reports the "
        "limit reached)",
        torch.__version__,
    )
    return {}


def compiled(unit: nn.Module) -> Callable[[nn.Module, Tensor], Tensor]:
    """The compiled callable for ``unit``'s structure, created on first use."""
    key = structure(unit)
    fn = _compiled.get(key)
    if fn is None:
        with _lock:
            fn = _compiled.get(key)
            if fn is None:
                fn = torch.compile(_rows, dynamic=True, **_options())
                _compiled[key] = fn
    return fn


def run(unit: nn.Module, x: Tensor) -> Tensor:
    """``unit(x)`` through its compiled graph. x: ... x D_in -> ... x D_o."""
    fn = compiled(unit)
    try:
        y = fn(unit, x.reshape(-1, x.size(-1)))
    except Exception as err:
        err.add_note(
            "(in a DExTra unit compiled by --delight-compile; Inductor needs a C++ "
            "compiler on CPU and Triton on a GPU; without the flag the model runs "
            "eagerly)"
        )
        raise
    return y.reshape(x.shape[:-1] + (y.size(-1),))
