"""--delight-trim-heap: the C heap's free pages go back to the kernel once per
training step, when the decoder's backward pass is over.

Expectations: the kernel's own count of resident pages (/proc/self/status)
falls when freed heap memory is trimmed; training computes the same loss and
gradients with and without the flag; the trims happen where the flag says and
nowhere else.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from delight_fairseq import heap

from helpers import TINY_SHAPE, build, train_namespace

glibc = pytest.mark.skipif(
    not heap.available(), reason="no malloc_trim in this C library (glibc only)"
)
linux = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads /proc/self/status"
)

VOCAB = 50

# Heap holes: 1 MiB blocks come from the heap once a 4 MiB block was freed
# (glibc raises its mmap threshold to the size of the largest freed mapping);
# freeing every other one leaves 100 holes of 1 MiB between live blocks, which
# glibc keeps resident.
HOLES = textwrap.dedent(
    """
    import torch
    from delight_fairseq import heap

    def rss_mib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    big = torch.ones(1 << 20)  # 4 MiB, mapped on its own
    del big
    blocks = [torch.ones(1 << 18) for _ in range(200)]  # 200 x 1 MiB, touched
    del blocks[::2]
    before = rss_mib()
    heap.trim()
    print(before - rss_mib())
    """
)


@glibc
@linux
def test_trimming_returns_freed_heap_holes_to_the_kernel():
    out = subprocess.run(
        [sys.executable, "-c", HOLES], capture_output=True, text=True, check=True
    )
    released = float(out.stdout.split()[-1])
    # 100 MiB of holes; a hole's partial pages at its ends stay
    assert released > 75, f"trimming released only {released:.0f} MiB"


def tiny(**flags):
    torch.manual_seed(0)
    return build("delight", src_vocab=VOCAB, **TINY_SHAPE, **flags)


def loss_and_grads(model, between=lambda: None):
    """One training step's loss and gradients; ``between`` runs after the forward
    pass, before the backward pass."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    prev = torch.randint(4, VOCAB, (3, 6), generator=g)
    target = torch.randint(4, VOCAB, (3, 6), generator=g)
    model.train()
    torch.manual_seed(7)  # the same dropout draws
    logits, _ = model(src, torch.tensor([7, 7, 7]), prev)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))
    between()
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "block"])
def test_trims_where_the_flag_says_and_changes_nothing_else(monkeypatch, checkpointing):
    calls = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1))
    flags = dict(checkpoint_activations=checkpointing)
    want_loss, want = loss_and_grads(tiny(**flags))
    assert calls == []  # off by default

    model = tiny(delight_trim_heap=True, **flags)
    assert "heap trimmed" in model.describe()

    def before_backward():
        assert calls == []  # not in the forward pass

    got_loss, got = loss_and_grads(model, before_backward)
    # once per step, in the backward pass
    assert len(calls) == 1
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=0)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)

    calls.clear()
    model.eval()
    with torch.no_grad():
        model(torch.randint(4, VOCAB, (2, 5)), torch.tensor([5, 5]),
              torch.randint(4, VOCAB, (2, 4)))  # fmt: skip
    assert calls == []  # never in evaluation or decoding


@pytest.mark.slow
def test_a_model_with_the_flag_scripts():
    model = tiny(delight_trim_heap=True).eval()
    src, prev = torch.randint(4, VOCAB, (2, 5)), torch.randint(4, VOCAB, (2, 4))
    lengths = torch.tensor([5, 5])
    scripted = torch.jit.script(model)
    torch.testing.assert_close(
        scripted(src, lengths, prev)[0], model(src, lengths, prev)[0]
    )


def test_fairseq_parses_the_flag():
    args = train_namespace(["--arch", "delight", "--delight-trim-heap"])
    assert args.delight_trim_heap is True
    plain = train_namespace(["--arch", "delight"])
    assert getattr(plain, "delight_trim_heap", False) is False
