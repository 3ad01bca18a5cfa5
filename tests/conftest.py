import argparse
import os
from pathlib import Path

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

import delight_fairseq  # noqa: F401  (registers the model)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("DELIGHT_SHARED_DATA", REPO.parent / "shared" / "data")
)


def make_dictionary(n_symbols: int) -> Dictionary:
    """A fairseq dictionary of exactly ``n_symbols`` entries (specials included)."""
    d = Dictionary()
    for i in range(n_symbols - len(d)):
        d.add_symbol(f"w{i}")
    assert len(d) == n_symbols
    return d


class FakeTask:
    def __init__(self, src: Dictionary, tgt: Dictionary = None):
        self.source_dictionary = src
        self.target_dictionary = tgt if tgt is not None else src


def build(
    arch: str = "delight", src_vocab: int = 100, tgt_vocab: int = None, **overrides
):
    """Build a model through fairseq's registry, as fairseq-train does."""
    args = argparse.Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    src = make_dictionary(src_vocab)
    tgt = src if tgt_vocab is None else make_dictionary(tgt_vocab)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, FakeTask(src, tgt))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared corpora not found at {SHARED_DATA} (set DELIGHT_SHARED_DATA)"
        )
    return SHARED_DATA
