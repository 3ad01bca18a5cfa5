"""DeLighT under torch.compile and TorchScript.

torch.compile: the whole model, forward and backward, gives the eager result
(the fused GLT kernel steps aside while Dynamo traces; Inductor compiles the
eager ops). TorchScript: the layers and the whole model script and give the
eager result, and so does fairseq's SequenceGenerator scripted around it
(fairseq's own use of TorchScript; fairseq-generate has no --scripting flag).
The scripted model runs the eager GLT path, not the fused kernel.

--delight-compile (compiling.py): the block DExTras compiled on first use give
the eager outputs and gradients, in training and evaluation, and the eager
beam search; 50 batches of different shapes compile at most 2 graphs per unit
structure; the flag composes with both checkpointing flags (dropout on) and
with a compiled model; it changes neither state dicts nor pickles, TorchScript
ignores it, and building a model compiles nothing.
"""

import copy
import pickle
import random

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from delight_fairseq import compiling
from delight_fairseq.dextra import DExTra
from delight_fairseq.group_linear import GroupLinear, LinearNormAct

from helpers import DROPOUT_OFF, TINY_SHAPE, USER_DIR, build, make_dictionary

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow

VOCAB = 50


def tiny_model():
    torch.manual_seed(0)
    return build("delight", src_vocab=VOCAB, **TINY_SHAPE, **DROPOUT_OFF)


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


# ---------------------------------------------------------------------------
# --delight-compile. Compiling dominates these tests' time: the models below
# have blocks of one depth, so that their four block DExTras share one
# structure and hence one set of graphs, which the tests reuse.

PAD = 1
# float32; Inductor reorders the matmuls' and LayerNorms' sums (and the eager
# side runs the fused GLT kernel), so the results agree to rounding, not bits
LOGITS_TOL = dict(rtol=1e-4, atol=1e-5)
GRADS_TOL = dict(rtol=1e-3, atol=1e-5)


def uniform_model(seed=0, **flags):
    """A tiny model whose block DExTras all have one structure."""
    torch.manual_seed(seed)
    cfg = dict(
        TINY_SHAPE, delight_enc_max_depth=2, delight_dec_max_depth=2, **DROPOUT_OFF
    )
    cfg.update(flags)
    return build("delight", src_vocab=VOCAB, **cfg)


def eager_and_compiled(**flags):
    """The same parameters without and with --delight-compile."""
    return uniform_model(**flags), uniform_model(delight_compile=True, **flags)


def block_dextras(model):
    return [layer.dextra for layer in [*model.encoder.layers, *model.decoder.layers]]


def batch(b, s, t, seed=0):
    """B x S source with left padding and B x T previous tokens with right
    padding (where there is room), as fairseq pads them."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, VOCAB, (b, s), generator=g)
    lengths = torch.full((b,), s)
    prev = torch.randint(4, VOCAB, (b, t), generator=g)
    if b > 1 and s > 2:
        src[0, :2] = PAD
        lengths[0] = s - 2
    if b > 1 and t > 2:
        prev[-1, -2:] = PAD
    return src, lengths, prev


def from_compiled_graph(y):
    """Whether autograd recorded ``y`` as (a view of) a compiled graph's output."""
    fn = y.grad_fn
    while fn is not None and "View" in type(fn).__name__:
        fn = fn.next_functions[0][0]
    return type(fn).__name__ == "CompiledFunctionBackward"


def test_delight_compile_gives_the_eager_outputs_and_gradients():
    eager, compiled = eager_and_compiled()
    assert len({compiling.structure(u) for u in block_dextras(compiled)}) == 1
    for shape in [(3, 7, 6), (2, 5, 9)]:
        args = batch(*shape)
        want_logits, want_grads = loss_and_grads(eager, eager, *args)
        got_logits, got_grads = loss_and_grads(compiled, compiled, *args)
        torch.testing.assert_close(got_logits, want_logits, **LOGITS_TOL)
        for name, grad in want_grads.items():
            torch.testing.assert_close(got_grads[name], grad, **GRADS_TOL)
    # evaluation, as fairseq validates: no gradients
    eager.eval(), compiled.eval()
    with torch.no_grad():
        for shape in [(3, 7, 6), (4, 3, 2)]:
            args = batch(*shape, seed=1)
            torch.testing.assert_close(
                compiled(*args)[0], eager(*args)[0], **LOGITS_TOL
            )


def test_delight_compile_recompiles_a_bounded_number_of_times(monkeypatch):
    """50 training batches, each of another B x S -> B x T shape: at most 2
    graphs per DExTra structure. The unit sees N = T x B rows of fixed width,
    and N is symbolic from the first compilation, so every N >= 2 shares one
    graph; Dynamo specializes N = 1 (the 1 x 1 -> 1 x 1 batch) into a second.
    A cache hit adds no graph; a run past the recompile limit would raise."""
    model = uniform_model(delight_compile=True).train()
    structures = {compiling.structure(u) for u in block_dextras(model)}
    rng = random.Random(0)
    shapes = [(1, 1, 1)]
    while len(shapes) < 50:
        shape = (rng.randint(1, 8), rng.randint(1, 12), rng.randint(1, 12))
        if shape not in shapes:
            shapes.append(shape)

    compiled_runs = []
    run = compiling.run

    def recording_run(unit, x):
        y = run(unit, x)
        compiled_runs.append(from_compiled_graph(y))
        return y

    monkeypatch.setattr(compiling, "run", recording_run)
    graphs = counters["stats"]["unique_graphs"]
    breaks = sum(counters["graph_break"].values())
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for shape in shapes:
            model.zero_grad()
            model(*batch(*shape))[0].sum().backward()
    new_graphs = counters["stats"]["unique_graphs"] - graphs
    print(
        f"graphs compiled over 50 shapes: {new_graphs} for {len(structures)} structure(s)"
    )
    assert new_graphs <= 2 * len(structures)
    assert sum(counters["graph_break"].values()) == breaks
    # every block's DExTra, in every batch, ran a compiled graph
    assert len(compiled_runs) == 50 * len(block_dextras(model))
    assert all(compiled_runs)


def test_delight_compile_decodes_as_eager():
    """fairseq's beam search: incremental decoding steps of one token for a
    batch of hypotheses that shrinks as sentences finish."""
    from fairseq.sequence_generator import SequenceGenerator

    eager, compiled = eager_and_compiled()
    dictionary = make_dictionary(VOCAB)
    src = batch(4, 9, 1, seed=5)[0]
    sample = {"net_input": {"src_tokens": src, "src_lengths": torch.full((4,), 9)}}
    hyps = []
    for model in (eager, compiled):
        generator = SequenceGenerator(
            [model.eval()], dictionary, beam_size=3, max_len_b=12
        )
        hyps.append(generator.forward(sample))
    for want, got in zip(*hyps):
        assert len(want) == len(got) == 3
        for a, b in zip(got, want):
            assert torch.equal(a["tokens"], b["tokens"])
            torch.testing.assert_close(a["score"], b["score"], **LOGITS_TOL)
            torch.testing.assert_close(
                a["positional_scores"], b["positional_scores"], **LOGITS_TOL
            )


@pytest.mark.parametrize(
    "flag", ["checkpoint_activations", "delight_checkpoint_dextra"]
)
def test_delight_compile_composes_with_checkpointing(flag):
    """The rerun of a checkpointed block or DExTra reruns its compiled graph,
    with the random state restored: the same dropout masks, loss and gradients."""

    def loss_and_grads_with_dropout(model, seed):
        src, lengths, prev = batch(3, 7, 6)
        model.zero_grad()
        torch.manual_seed(seed)
        logits = model(src, lengths, prev)[0]
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), prev.reshape(-1))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    dropout = dict(delight_dropout=0.2)  # inside the compiled units
    plain = uniform_model(delight_compile=True, **dropout).train()
    checkpointed = uniform_model(delight_compile=True, **dropout, **{flag: True})
    want_loss, want_grads = loss_and_grads_with_dropout(plain, seed=7)
    got_loss, got_grads = loss_and_grads_with_dropout(checkpointed.train(), seed=7)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-6, atol=1e-6)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-6)
    # dropout is on: other draws, another loss
    assert not torch.equal(loss_and_grads_with_dropout(plain, seed=8)[0], want_loss)


def test_delight_compile_leaves_state_dicts_pickles_and_torchscript_alone():
    eager, compiled = eager_and_compiled()
    eager.eval(), compiled.eval()
    args = batch(3, 7, 6, seed=2)
    with torch.no_grad():
        want = eager(*args)[0]
        torch.testing.assert_close(compiled(*args)[0], want, **LOGITS_TOL)
    # after a compiled run: the eager model's parameters and buffers, nothing more
    state = compiled.state_dict()
    assert list(state) == list(eager.state_dict())
    compiled.load_state_dict(eager.state_dict())
    with torch.no_grad():
        for clone in (pickle.loads(pickle.dumps(compiled)), copy.deepcopy(compiled)):
            assert all(layer.compile_dextra for layer in clone.encoder.layers)
            torch.testing.assert_close(clone(*args)[0], want, **LOGITS_TOL)
        # TorchScript runs the units as written (the eager GLT path)
        scripted = torch.jit.script(compiled)
        torch.testing.assert_close(scripted(*args)[0], want, rtol=1e-5, atol=1e-6)


def test_delight_compile_inside_a_compiled_model():
    """torch.compile of the whole model traces the units as written (Dynamo's
    own eager backend here: the tracing is what matters, and it is quick)."""
    eager, compiled = eager_and_compiled()
    args = batch(3, 7, 6, seed=3)
    got = torch.compile(compiled, backend="eager")(*args)[0]
    torch.testing.assert_close(got, eager(*args)[0], **LOGITS_TOL)


def test_delight_compile_is_a_flag_and_compiles_nothing_at_build(monkeypatch):
    from fairseq import options

    parser = options.get_training_parser()
    argv = ["data-bin/x", "--user-dir", USER_DIR, "--arch", "delight"]
    # fairseq leaves a model flag's default to the config: absent means off
    assert not getattr(
        options.parse_args_and_arch(parser, argv), "delight_compile", False
    )
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [*argv, "--delight-compile"])
    assert args.delight_compile is True

    def no_compiling(*args, **kwargs):
        raise AssertionError("torch.compile called while building the model")

    monkeypatch.setattr(torch, "compile", no_compiling)
    model = uniform_model(delight_compile=True)
    assert model.describe().endswith(", DExTra units compiled")
    assert all(layer.compile_dextra for layer in model.decoder.layers)
