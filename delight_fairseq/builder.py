"""Build a model through fairseq's registry, as ``fairseq-train`` does.

One builder for everything that makes a model outside fairseq's own CLIs: the
tests, the benchmarks, the reproduce driver and the recipes.

    model = build_model("delight_transformer_wmt16_en_ro", sized_dictionary(35_000),
                        delight_emb_out_dim=128)
"""

import argparse
from typing import Optional

from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY


def sized_dictionary(n_symbols: int) -> Dictionary:
    """A dictionary of exactly ``n_symbols`` entries (fairseq's specials included),
    for counting parameters without data."""
    d = Dictionary()
    for i in range(n_symbols - len(d)):
        d.add_symbol(f"<w{i}>")
    return d


class DictionaryTask:
    """The two dictionaries a model's ``build_model`` reads from its task."""

    def __init__(self, source: Dictionary, target: Optional[Dictionary] = None):
        self.source_dictionary = source
        self.target_dictionary = source if target is None else target


def arch_args(arch: str, **overrides) -> argparse.Namespace:
    """The flags as ``--arch ARCH`` fills them, after the explicit ``overrides``."""
    if arch not in ARCH_CONFIG_REGISTRY:
        raise ValueError(f"unknown --arch {arch!r}; is the plugin imported?")
    args = argparse.Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return args


def build_model(
    arch: str, source: Dictionary, target: Optional[Dictionary] = None, **overrides
):
    """The model ``--arch ARCH`` with these flags builds on these dictionaries
    (``target`` None: one joined dictionary)."""
    args = arch_args(arch, **overrides)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, DictionaryTask(source, target))
