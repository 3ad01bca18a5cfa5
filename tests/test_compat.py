"""The two stack fixes: fairseq's checkpoint loading, and no dropped batch."""

import argparse
import pickle

import numpy as np
import pytest
import torch
from fairseq.data import data_utils

import delight_fairseq  # noqa: F401  (installs the fixes)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "args": argparse.Namespace(arch="delight"),
            "model": {"w": torch.ones(2)},
            "extra": np.arange(3),
        },
        path,
    )
    return path


def test_other_callers_keep_safe_loading(checkpoint):
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint)


def fairseq_function(source):
    """A function defined as if in a fairseq module (its globals' __name__)."""
    scope = {"__name__": "fairseq.some_module", "torch": torch}
    exec(source, scope)
    return scope["f"]


def test_fairseq_callers_read_full_checkpoints(checkpoint):
    load = fairseq_function("def f(p):\n    return torch.load(p, map_location='cpu')")
    state = load(checkpoint)
    assert state["args"].arch == "delight" and state["extra"].tolist() == [0, 1, 2]


def test_explicit_weights_only_is_respected_for_fairseq_callers(checkpoint):
    load = fairseq_function("def f(p):\n    return torch.load(p, weights_only=True)")
    with pytest.raises(pickle.UnpicklingError):
        load(checkpoint)


def test_the_caller_is_found_at_any_depth(checkpoint):
    """The caller check walks past every frame of the compat module, however
    many there are, to the first frame outside it."""
    compat = delight_fairseq.compat
    helper_scope = {"__name__": compat.__name__, "compat": compat}
    exec(
        "def one():\n    return compat._called_from_fairseq()\n"
        "def two():\n    return one()\n",
        helper_scope,
    )
    scope = {**helper_scope, "__name__": "fairseq.some_module"}
    exec(
        "def direct():\n    return compat._called_from_fairseq()\n"
        "def via_one():\n    return one()\n"
        "def via_two():\n    return two()\n",
        scope,
    )
    assert scope["direct"]() and scope["via_one"]() and scope["via_two"]()
    assert not compat._called_from_fairseq()  # called from this test module
    assert not helper_scope["two"]()  # only compat frames, then this module


def test_install_is_idempotent():
    wrapped = torch.load
    delight_fairseq.compat.install()
    assert torch.load is wrapped


@pytest.mark.parametrize(
    "n, bsz, mult", [(100, 50, 8), (99, 1, 8), (17, 4, 8), (64, 16, 8)]
)
def test_batch_by_size_keeps_every_index(n, bsz, mult):
    indices = np.arange(n, dtype=np.int64)
    batches = data_utils.batch_by_size(
        indices,
        lambda i: 10,
        num_tokens_vec=np.full(n, 10, dtype=np.int64),
        max_sentences=bsz,
        required_batch_size_multiple=mult,
    )
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    # every batch but the last still respects the multiple
    assert all(len(b) % mult == 0 or len(b) == bsz for b in batches[:-1])
