"""Activation checkpointing: --checkpoint-activations (per block),
--offload-activations and --delight-checkpoint-dextra (per DExTra unit).

Checkpointing must change memory and time only: the same loss and gradients
with dropout on (the rerun draws the same masks), with and without the fused
GLT kernel; the same parameters and checkpoints; decoding untouched.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from fairseq.sequence_generator import SequenceGenerator

from delight_fairseq import fused
from delight_fairseq.tools.synthetic import write_corpus

from helpers import (
    TINY_MODEL,
    TINY_SHAPE,
    TRAIN,
    USER_DIR,
    build,
    make_dictionary,
    preprocess,
    run_cli,
)

VOCAB = 50
PAD = 1
# every dropout of the base architecture is on (0.1): the rerun must redraw it
MODES = {
    "block": dict(checkpoint_activations=True),
    "offload": dict(offload_activations=True),
    "dextra": dict(delight_checkpoint_dextra=True),
}


def tiny(seed=0, **flags):
    torch.manual_seed(seed)
    return build("delight", src_vocab=VOCAB, **TINY_SHAPE, **flags)


def batch():
    """Source with left padding, targets with right padding, as fairseq pads."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    src[0, :2] = PAD
    prev = torch.randint(4, VOCAB, (3, 6), generator=g)
    target = torch.randint(4, VOCAB, (3, 6), generator=g)
    prev[1, -2:] = target[1, -2:] = PAD
    return src, torch.tensor([5, 7, 7]), prev, target


def loss_and_grads(model, seed=7):
    """One training forward and backward with the dropout draws of ``seed``."""
    src, lengths, prev, target = batch()
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    logits, _ = model(src, lengths, prev)
    loss = F.cross_entropy(
        logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=PAD, reduction="sum"
    )
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        grads[name] = p.grad.clone()
    return loss.detach(), grads


def blocks(model):
    return [*model.encoder.layers, *model.decoder.layers]


def count_calls(model):
    """Runs of each block's DExTra and self-attention, and of the two embeddings'
    DExTra units, forward and rerun (pre-hooks: a rerun stops once it has rebuilt
    what the backward needs)."""
    calls = {"dextra": 0, "self_attn": 0, "embedding": 0}
    units = [(key, getattr(layer, key)) for layer in blocks(model)
             for key in ("dextra", "self_attn")]  # fmt: skip
    units += [("embedding", side.embed_tokens.dextra)
              for side in (model.encoder, model.decoder)]  # fmt: skip
    for key, unit in units:

        def hook(module, args, key=key):
            calls[key] += 1

        unit.register_forward_pre_hook(hook)
    return calls


@pytest.fixture(params=["fused", "eager"])
def glt_path(request, monkeypatch):
    if request.param == "fused":
        if fused.load() is None:
            pytest.skip("the fused GLT kernel could not be built here (no compiler?)")
        monkeypatch.setenv("DELIGHT_FUSED_GLT", "1")
    else:
        monkeypatch.setenv("DELIGHT_FUSED_GLT", "0")
    assert fused.usable(torch.zeros(2)) == (request.param == "fused")
    return request.param


@pytest.mark.parametrize("fast_dropout", [False, True], ids=["torch", "fast"])
@pytest.mark.parametrize("mode", list(MODES))
def test_same_loss_and_gradients_with_dropout(mode, glt_path, fast_dropout):
    """Also with --delight-fast-dropout: its masks come from seeds drawn from
    torch's generator, which the rerun restores."""
    want_loss, want = loss_and_grads(tiny(delight_fast_dropout=fast_dropout))
    model = tiny(**MODES[mode], delight_fast_dropout=fast_dropout)
    calls = count_calls(model)
    got_loss, got = loss_and_grads(model)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=0)
    assert got.keys() == want.keys()
    for name in want:  # encoder, decoder, embeddings: every parameter
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-8)
    # it did recompute: each DExTra ran twice (the embeddings' too), self-attention
    # only per block
    n = len(blocks(model))
    attn_runs = 2 * n if mode in ("block", "offload") else n
    assert calls == {"dextra": 2 * n, "self_attn": attn_runs, "embedding": 2 * 2}


def test_the_comparison_sees_dropout():
    """The gradient test would miss lost dropout masks if dropout were off."""
    model = tiny(**MODES["block"])
    assert loss_and_grads(model, seed=7)[0] != loss_and_grads(model, seed=8)[0]


def test_checkpointing_keeps_fewer_activations():
    """Bytes the autograd graph keeps outside the checkpointed parts (the
    memory effect, counted rather than timed)."""

    def kept_bytes(model):
        src, lengths, prev, _ = batch()
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(src, lengths, prev)
        return total

    plain = kept_bytes(tiny())
    per_dextra = kept_bytes(tiny(**MODES["dextra"]))
    per_block = kept_bytes(tiny(**MODES["block"]))
    assert per_block < per_dextra < plain


def test_parameters_and_checkpoints_are_unchanged(tmp_path):
    plain = tiny()
    flagged = tiny(seed=5, **MODES["block"])
    assert list(flagged.state_dict()) == list(plain.state_dict())
    # a checkpoint written without the flag loads into a model with it
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pt")
    state = torch.load(tmp_path / "plain.pt", weights_only=False)["model"]
    flagged.load_state_dict(state)
    want_loss, want = loss_and_grads(plain)
    got_loss, got = loss_and_grads(flagged)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=0)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=1e-8)
    # and back
    plain.load_state_dict(flagged.state_dict())


@pytest.mark.parametrize("mode", list(MODES))
def test_incremental_decoding_is_unaffected(mode):
    src, lengths, _, _ = batch()
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths}}
    results = []
    for model in (tiny(), tiny(**MODES[mode])):
        model.eval()
        calls = count_calls(model)
        generator = SequenceGenerator([model], make_dictionary(VOCAB), beam_size=2)
        with torch.no_grad():
            results.append(generator.forward(sample))
        assert calls["dextra"] == calls["self_attn"] > 0
    for want, got in zip(*results):
        for a, b in zip(want, got):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["score"], b["score"], rtol=1e-6, atol=0)


def test_checkpointing_applies_only_to_training_with_gradients():
    model = tiny(**MODES["block"])
    calls = count_calls(model)
    src, lengths, prev, _ = batch()
    model.eval()  # evaluation with gradients: no rerun in the backward
    model(src, lengths, prev)[0].sum().backward()
    assert calls["dextra"] == calls["self_attn"] == len(blocks(model))
    assert calls["embedding"] == 2
    model.train()
    with torch.no_grad():  # fairseq's validation: nothing to rerun
        model(src, lengths, prev)
    assert calls["dextra"] == 2 * len(blocks(model))
    assert calls["embedding"] == 4


@pytest.mark.parametrize("other", ["checkpoint_activations", "offload_activations"])
def test_nested_checkpointing_is_refused_naming_the_flags(other):
    flag = "--" + other.replace("_", "-")
    with pytest.raises(ValueError, match=f"--delight-checkpoint-dextra and {flag}"):
        tiny(delight_checkpoint_dextra=True, **{other: True})


def test_offload_sets_checkpoint_activations_and_the_log_says_so():
    model = tiny(**MODES["offload"])
    assert model.cfg.checkpoint_activations
    assert model.describe().endswith(
        ", activation checkpointing per block, inputs offloaded to CPU"
    )
    assert all(
        b.checkpoint_activations and b.offload_activations for b in blocks(model)
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["block", "dextra"])
def test_a_checkpointed_model_scripts(mode):
    model = tiny(**MODES[mode]).eval()
    src, lengths, prev, _ = batch()
    scripted = torch.jit.script(model)
    torch.testing.assert_close(
        scripted(src, lengths, prev)[0], model(src, lengths, prev)[0]
    )


def per_update_losses(log):
    found = re.findall(r"train_inner \| .*?\bloss=([\d.]+),.*?num_updates=(\d+)", log)
    return {int(n): float(loss) for loss, n in found}


@pytest.mark.slow
def test_fairseq_train_with_checkpoint_activations_trains_and_resumes(tmp_path):
    """A run without the flag stops after 3 updates; resumed with
    --checkpoint-activations it continues as the uninterrupted run does."""
    data = preprocess(
        write_corpus(tmp_path / "raw", 120, 10, 0, seed=3), tmp_path / "bin"
    )
    args = [data, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN]
    args += ["--max-tokens", "300", "--log-interval", "1", "--disable-validation"]
    _, straight = run_cli(
        "fairseq-train", *args, "--save-dir", tmp_path / "a", "--max-update", 6
    )
    run_cli("fairseq-train", *args, "--save-dir", tmp_path / "b", "--max-update", 3)
    _, resumed = run_cli(
        "fairseq-train", *args, "--checkpoint-activations",
        "--save-dir", tmp_path / "b", "--max-update", 6,
    )  # fmt: skip
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch 1 @ 3 ", resumed)
    assert "activation checkpointing per block" in resumed
    assert "activation checkpointing" not in straight
    full, part = per_update_losses(straight), per_update_losses(resumed)
    assert sorted(full) == [1, 2, 3, 4, 5, 6] and sorted(part) == [4, 5, 6]
    for n in part:
        assert part[n] == pytest.approx(full[n], abs=2e-3)
    a = torch.load(tmp_path / "a" / "checkpoint_last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint_last.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        torch.testing.assert_close(b["model"][name], a["model"][name])
