"""DeLighT under torch.compile and TorchScript.

torch.compile: the whole model, forward and backward, gives the eager result
(the fused GLT kernel steps aside while Dynamo traces; Inductor compiles the
eager ops). TorchScript: the layers and the whole model script and give the
eager result, and so does fairseq's SequenceGenerator scripted around it
(fairseq's own use of TorchScript; fairseq-generate has no --scripting flag).
The scripted model runs the eager GLT path, not the fused kernel.
"""

import pytest
import torch

from delight_fairseq.dextra import DExTra
from delight_fairseq.group_linear import GroupLinear, LinearNormAct

from helpers import build

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow

VOCAB = 50


def tiny_model():
    torch.manual_seed(0)
    return build(
        "delight",
        src_vocab=VOCAB,
        delight_emb_out_dim=32,
        delight_emb_depth=2,
        delight_enc_layers=2,
        delight_dec_layers=2,
        delight_enc_min_depth=2,
        delight_enc_max_depth=3,
        delight_dec_min_depth=2,
        delight_dec_max_depth=3,
        dropout=0.0,
        attention_dropout=0.0,
        delight_dropout=0.0,
        delight_emb_dropout=0.0,
        pe_dropout=0.0,
        ffn_dropout=0.0,
    )


def loss_and_grads(model, run, src, lengths, prev):
    """Logits and parameter gradients of ``model`` when called through ``run``
    (the model itself, or its compiled wrapper)."""
    model.zero_grad()
    logits = run(src, lengths, prev)[0]
    loss = logits.float().log_softmax(-1).mean()
    loss.backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_whole_model_under_torch_compile():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    prev = torch.randint(4, VOCAB, (3, 6), generator=g)
    lengths = torch.full((3,), 7)
    want_logits, want_grads = loss_and_grads(model, model, src, lengths, prev)
    compiled = torch.compile(model)
    got_logits, got_grads = loss_and_grads(model, compiled, src, lengths, prev)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-4, atol=1e-4)
    assert got_grads.keys() == want_grads.keys()
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("shuffle", [True, False])
def test_glt_scripts(shuffle):
    torch.manual_seed(2)
    glt = GroupLinear(24, 36, 3, shuffle=shuffle).eval()
    scripted = torch.jit.script(glt)
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(scripted(x), glt(x), rtol=1e-5, atol=1e-5)


def test_dextra_and_its_layers_script():
    torch.manual_seed(3)
    unit = DExTra(32, 16, 16, 4, 2.0, 4).eval()
    x = torch.randn(7, 32)
    torch.testing.assert_close(torch.jit.script(unit)(x), unit(x), rtol=1e-5, atol=1e-5)
    layer = LinearNormAct(8, 12).eval()
    y = torch.randn(3, 8)
    torch.testing.assert_close(torch.jit.script(layer)(y), layer(y))


def test_whole_model_scripts():
    model = tiny_model().eval()
    scripted = torch.jit.script(model)
    g = torch.Generator().manual_seed(4)
    src = torch.randint(4, VOCAB, (3, 7), generator=g)
    prev = torch.randint(4, VOCAB, (3, 6), generator=g)
    lengths = torch.tensor([7, 7, 7])
    torch.testing.assert_close(
        scripted(src, lengths, prev)[0], model(src, lengths, prev)[0]
    )


def test_scripted_sequence_generator_beam_search():
    """fairseq's own TorchScript use: torch.jit.script(SequenceGenerator)."""
    from fairseq.sequence_generator import SequenceGenerator

    from helpers import make_dictionary

    model = tiny_model().eval()
    generator = SequenceGenerator([model], make_dictionary(VOCAB), beam_size=3)
    scripted = torch.jit.script(generator)
    g = torch.Generator().manual_seed(5)
    src = torch.randint(4, VOCAB, (4, 9), generator=g)
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.full((4,), 9)}}
    want = generator.forward(sample)
    got = scripted.forward(sample)
    for hyps_got, hyps_want in zip(got, want):
        assert len(hyps_got) == len(hyps_want) == 3
        for a, b in zip(hyps_got, hyps_want):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["score"], b["score"])
