"""``--delight-trim-heap``: freed CPU memory goes back to the operating system
during training (docs/architecture.md section 14).

torch allocates a CPU tensor with glibc's ``malloc``. After the first large free,
glibc serves blocks of up to 32 MiB from its heap, and a freed block stays in the
resident set until glibc reuses it. A training step frees and allocates tensors
whose sizes change with every batch's shape, and with the block-wise scaling's
widths, so the heap fragments: the holes stay resident, and the resident set
grows to several times what the tensors alive at once need. ``malloc_trim(0)``
hands the whole free pages of every hole back to the kernel (``madvise``); the
next use of such a page faults in a zeroed one.

With the flag, the model trims once per training step, when the gradient of
the encoder's output is complete: the decoder's backward pass is then over, its
(rerun) activations are free, and the encoder's backward pass is still to come.
More trims (before each step as well, or after every block's backward pass)
lower the peak no further in the measurements and cost more time: each trim's
pages fault in again as they are reused (benchmarks/RESULTS.md). Other C
libraries have no ``malloc_trim``; there the flag warns once and does nothing.
"""

import ctypes
import functools
import logging
from typing import Callable, Optional

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim`` from the process's own C library, or None."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        logger.warning(
            "--delight-trim-heap: this C library has no malloc_trim (glibc only); "
            "the flag does nothing here"
        )
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def available() -> bool:
    return _malloc_trim() is not None


def trim() -> None:
    """Return every whole free page of the C heap to the kernel."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


def _trim_on_grad(grad: Tensor) -> None:
    trim()


def trim_after_backward(x: Tensor) -> None:
    """Trim once the backward pass has produced the gradient of ``x`` (all that
    uses ``x`` has run its backward). Only for CPU tensors that take part in
    autograd."""
    if x.requires_grad and x.device.type == "cpu" and torch.is_grad_enabled():
        x.register_hook(_trim_on_grad)
