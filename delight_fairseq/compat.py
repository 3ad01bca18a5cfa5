"""Let fairseq read its own checkpoints on torch >= 2.6.

torch now defaults to ``torch.load(weights_only=True)``, which refuses the
argparse Namespace, omegaconf configs and numpy values that every fairseq
checkpoint holds: resume, ``fairseq-generate``, ``fairseq-interactive`` and
``from_pretrained`` all fail with "Unsupported global". The fix is narrow:
calls made *from fairseq's own modules* that leave ``weights_only`` unset get
``weights_only=False``, as they did when fairseq was written. Any explicit
argument, and every other caller, is left exactly as it was.
"""

import functools
import sys

import torch

_MARK = "_delight_fairseq_compat"


def _called_from_fairseq(depth: int = 2) -> bool:
    module = sys._getframe(depth).f_globals.get("__name__", "")
    return module == "fairseq" or module.startswith("fairseq.")


def install() -> None:
    """Wrap ``torch.load`` once per process (idempotent)."""
    if getattr(torch.load, _MARK, False):
        return
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        if "weights_only" not in kwargs and _called_from_fairseq():
            kwargs["weights_only"] = False
        return original(*args, **kwargs)

    setattr(load, _MARK, True)
    torch.load = load
