"""The criterion's backward pass writes the gradient over the logits it made
itself (criterion.py): the same gradient, in the logits' own memory, on the CPU
kernel and on the eager path; a second backward pass and any other reader of the
overwritten logits fail loudly."""

import pytest
import torch

from delight_fairseq.criterion import _SmoothedCrossEntropy


def linear_logits(rows=12, vocab=300, width=8, seed=0):
    """Logits made by a linear map, as the criterion's forward makes them: a
    tensor inside the graph that the backward pass may overwrite."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, width, generator=g, requires_grad=True)
    weight = torch.randn(vocab, width, generator=g, requires_grad=True)
    target = torch.randint(2, vocab, (rows,), generator=g)
    target[3] = 1  # a padding row
    return features, weight, target


@pytest.mark.parametrize("kernel", ["1", "0"])
def test_overwriting_backward_writes_the_same_gradient_over_the_logits(
    kernel, monkeypatch
):
    monkeypatch.setenv("DELIGHT_FUSED_GLT", kernel)
    grads, where = [], []
    for overwrite in (False, True):
        features, weight, target = linear_logits()
        logits = features @ weight.t()
        logits.register_hook(lambda g: where.append(g.data_ptr()))
        loss, nll, _ = _SmoothedCrossEntropy.apply(
            logits, target, 0.1, 1, True, overwrite
        )
        (loss + 0.3 * nll).backward()
        grads.append((features.grad, weight.grad))
        where.append(logits.data_ptr())
    # without overwrite a fresh tensor; with it, the logits' own memory
    assert where[0] != where[1] and where[2] == where[3]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_second_backward_over_overwritten_logits_is_refused():
    features, weight, target = linear_logits()
    loss, _, _ = _SmoothedCrossEntropy.apply(
        features @ weight.t(), target, 0.1, 1, False, True
    )
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="ran twice over one forward"):
        loss.backward()


def test_another_reader_of_overwritten_logits_fails_loudly():
    # a node that saved the logits and runs after the criterion's backward
    # sees the raised version counter, not the gradient in their place
    features, weight, target = linear_logits()
    logits = features @ weight.t()
    other = logits.pow(2).mean()  # saves the logits
    loss, _, _ = _SmoothedCrossEntropy.apply(logits, target, 0.1, 1, False, True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + other).backward()
