"""``python -m delight_fairseq.tools.prep BENCHMARK``: the same as ``delight-prep``."""

from .cli import console

console()
