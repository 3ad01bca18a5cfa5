"""The fused CPU kernels: the GLT tail (bias, feature shuffle, group LayerNorm,
swish), the label-smoothed cross-entropy's passes over the logits (criterion.py),
with ``--delight-fast-dropout`` dropout with a counter-based mask, and the
decoding engine's beam candidates (inference/engine.py, csrc/beam_topk.cpp).

The sources in ``csrc/`` are compiled on first use with
torch's C++ extension builder (about 85 s on two cores, then cached under
``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``, one build per
checkout; ``scripts/setup.sh`` builds it once). Where they cannot be used (no
compiler, a GPU tensor, half precision, or ``DELIGHT_FUSED_GLT=0`` in the
environment) the GLT and the criterion run the same arithmetic with eager
PyTorch ops, and dropout is torch's; the two paths agree to float tolerance
(tests/test_fused.py, tests/test_criterion.py), and the beam candidates exactly
(tests/test_beam_topk.py).
"""

import hashlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

_CSRC = Path(__file__).with_name("csrc")
_SOURCES = [
    _CSRC / n
    for n in (
        "glt_tail.cpp",
        "dropout.cpp",
        "cross_entropy.cpp",
        "beam_topk.cpp",
        "decoder_step.cpp",
        "attend_one.cpp",
        "encoder_blocks.cpp",
        "search.cpp",
    )
]
_lock = threading.Lock()
_module = None
_failed = False
_DTYPES = (torch.float32, torch.float64)


def enabled() -> bool:
    return os.environ.get("DELIGHT_FUSED_GLT", "1") != "0"


def _cflags(isa: str) -> list:
    """-O3 with OpenMP (ATen's parallel_for); AVX2 + FMA where the CPU has them
    (the name of the build carries the ISA, so a cache shared by different
    machines never hands one a binary it cannot run). -ffast-math lets GCC
    vectorize the reductions; infinities and NaNs keep their IEEE meaning."""
    flags = ["-O3", "-fopenmp", "-ffast-math", "-fno-finite-math-only"]
    if isa in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def _build_name(isa: str) -> str:
    """One build per ISA and per copy of the source: torch keys its cache by this
    name, and two checkouts sharing one name would rebuild it over each other
    (and could load a library being rewritten)."""
    where = hashlib.sha1(str(_CSRC.resolve()).encode()).hexdigest()[:8]
    return f"delight_glt_tail_{isa.lower()}_{where}"


#: a build takes about 85 s; a lock this old was left by a process that died
STALE_LOCK_S = 600


def _clear_stale_lock(name: str) -> None:
    """torch waits without end for the lock file of a build that a killed
    process left behind; an old one is removed, with a warning."""
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory(name, verbose=False)) / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_S:
        logger.warning(
            "DeLighT: removing %s, left %.0f minutes ago by a build that did not "
            "finish (torch would wait for it forever)", lock, age / 60,
        )  # fmt: skip
        lock.unlink(missing_ok=True)


def _build_path(path: str, bindir: str) -> str:
    """PATH for the build: the interpreter's directory first when it holds a
    ninja (the pinned one, in a venv). Processes that reach the build directory
    with different ninjas rebuild the kernels from scratch each time one
    follows the other: ninja 1.11 (a system one) and 1.13 (the pin) do not
    recognise each other's build log. The pin is also found when the venv is
    not on PATH, as when its tools are called by their full path."""
    if bindir and os.access(os.path.join(bindir, "ninja"), os.X_OK):
        return bindir + os.pathsep + path
    return path


def load():
    """The compiled extension, building it on first call; None if it cannot
    be built (the reason is logged once)."""
    global _module, _failed
    if _module is not None or _failed:
        return _module
    with _lock:
        if _module is None and not _failed:
            from torch.utils.cpp_extension import load as build

            isa = torch.backends.cpu.get_cpu_capability()
            logger.info(
                "DeLighT: loading the fused CPU kernels (%s, %s)",
                ", ".join(f.name for f in _SOURCES),
                isa,
            )
            _clear_stale_lock(_build_name(isa))
            path = os.environ.get("PATH", "")
            os.environ["PATH"] = _build_path(path, os.path.dirname(sys.executable))
            try:
                _module = build(
                    name=_build_name(isa),
                    sources=[str(f) for f in _SOURCES],
                    extra_cflags=_cflags(isa),
                    extra_ldflags=["-fopenmp"],
                    verbose=False,
                )
            except Exception as err:  # no compiler, no ninja, build error
                _failed = True
                logger.warning(
                    "DeLighT: the fused GLT kernel could not be built (%s); "
                    "using eager PyTorch ops. Set DELIGHT_FUSED_GLT=0 to skip "
                    "the attempt.",
                    str(err).strip().splitlines()[-1] if str(err).strip() else err,
                )
            finally:
                os.environ["PATH"] = path
    return _module


def usable(y: Tensor) -> bool:
    """Whether the fused kernel handles ``y`` (and is switched on and built)."""
    if torch.compiler.is_compiling():  # Dynamo traces the eager ops instead
        return False
    if not enabled() or y.device.type != "cpu" or y.dtype not in _DTYPES:
        return False
    return load() is not None


class GLTTail(torch.autograd.Function):
    """(Y + bias) -> shuffle -> group LayerNorm -> swish, Y: g x N x m."""

    @staticmethod
    def forward(ctx, y, bias, weight, beta, shuffle: bool):
        y = y.contiguous()
        out, mean, rstd = _module.forward(y, bias, weight, beta, shuffle)
        ctx.save_for_backward(y, bias, weight, beta, mean, rstd)
        ctx.shuffle = shuffle
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        y, bias, weight, beta, mean, rstd = ctx.saved_tensors
        grad_y, grad_bias, grad_w, grad_beta = _module.backward(
            grad, y, bias, weight, beta, mean, rstd, ctx.shuffle
        )
        return grad_y, grad_bias, grad_w, grad_beta, None


def set_fast_dropout(model: torch.nn.Module, on: bool) -> None:
    """``--delight-fast-dropout``: switch the counter-based masks on or off in
    every module of ``model`` that draws dropout (they have ``fast_dropout``)."""
    for module in model.modules():
        if hasattr(module, "fast_dropout"):
            module.fast_dropout = on


def dropout(x: Tensor, p: float, training: bool, counter: bool) -> Tensor:
    """``F.dropout(x, p, training)``; with ``counter`` (``--delight-fast-dropout``)
    the mask of a CPU float tensor comes from the fused kernel instead: hashed
    from each element's index and a seed drawn from torch's generator, on all
    threads, and computed again in the backward pass instead of being stored.
    The same distribution as torch's masks, other draws; a rerun under
    activation checkpointing restores the generator and so draws the same."""
    if not torch.jit.is_scripting():
        if counter and training and p > 0.0 and usable(x):
            return CounterDropout.apply(x, p, _seed())
    return torch.nn.functional.dropout(x, p=p, training=training)


def _seed() -> int:
    """A 62-bit seed from torch's default generator (seeded by fairseq)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


class CounterDropout(torch.autograd.Function):
    """x -> x * keep(index, seed) / (1 - p); the backward pass applies the same
    mask to the gradient (csrc/dropout.cpp)."""

    @staticmethod
    def forward(ctx, x, p: float, seed: int):
        ctx.p, ctx.seed = p, seed
        return _module.counter_dropout(x, p, seed)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return _module.counter_dropout(grad, ctx.p, ctx.seed), None, None
