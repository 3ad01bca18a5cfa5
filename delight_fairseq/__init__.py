"""DeLighT (Mehta et al., ICLR 2021) as a plugin for stock fairseq.

Load it with ``--user-dir delight_fairseq`` (or ``import delight_fairseq``):
this registers the ``delight_transformer`` model, its ``--arch`` presets, the
``delight_label_smoothed_cross_entropy`` criterion and the ``wallclock_cosine``
LR scheduler.
"""

from . import compat

compat.install()

from . import criterion, model, schedule  # noqa: E402,F401  (registers with fairseq)
from .model import DeLighTTransformerModel  # noqa: E402,F401

__version__ = "0.1.0"
