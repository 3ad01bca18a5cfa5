"""delight_lite: a model exported by delight-export (delight_fairseq/inference/
export.py), decoded in NumPy (delight_lite/model.py, search.py) and served by
delight-lite (delight_lite/translate.py, cli.py).

The search must be fairseq's: on float64 models (exported in float64, whose
float32 log-probabilities then agree with the torch model's to the last bit in
practice) the best hypotheses and scores are SequenceGenerator's for every
model variant and search setting of tests/test_engine.py; on a trained float32
model, the translations are the engine's. Nothing of it imports torch or
fairseq, and its dictionaries behave as fairseq's.
"""

import copy

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary
from test_engine import (
    SETTINGS,
    VARIANTS,
    fairseq_best,
    left_padded,
    random_model,
    random_sources,
)

from delight_fairseq.inference import translate as tr
from delight_fairseq.inference.export import export_model
from delight_lite.model import Model
from delight_lite.search import Options, Search, top_k
from delight_lite.stream import TranslateError
from delight_lite.translate import LiteTranslator, Vocabulary

from helpers import DROPOUT_OFF, TINY_SHAPE, build, make_dictionary
from translate_helpers import (  # noqa: F401 (eager_glt: an autouse fixture)
    eager_glt,
    run_python,
    save_checkpoint,
    synthetic_pairs,
)

_exported = {}


def exported(variant, tmp_path_factory):
    """test_engine's float64 model of this variant, its eos row moved off
    the token row it copies (test_engine.eos_prone), exported; with its
    dictionary and batch. A copied row ties eos with that token exactly,
    and fairseq leaves the order of tied candidates to torch.topk, which
    does not specify it (delight_lite takes the lower index first)."""
    if variant not in _exported:
        model, d, src, lengths = random_model(variant)
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.decoder.output_weight()[d.eos()] *= 1.001
        folder = tmp_path_factory.mktemp(f"lite_{variant}")
        export_model(model, d, d, folder)
        _exported[variant] = (Model(folder), model, d, src, lengths)
    return _exported[variant]


def lite_best(lite: Model, src, setting, **kw):
    beam, lenpen, a, b, min_len = setting
    search = Search(lite, Options(beam, lenpen, a, b, min_len, **kw))
    tokens, lengths, scores = search.search(src.numpy())
    hyps = [row[:n] for row, n in zip(tokens.tolist(), lengths.tolist())]
    return hyps, torch.from_numpy(scores)


@pytest.mark.parametrize(
    "setting", SETTINGS, ids=lambda s: "beam{}-lp{}-a{}-b{}-min{}".format(*s)
)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_same_hypotheses_as_sequence_generator(variant, setting, tmp_path_factory):
    lite, model, d, src, lengths = exported(variant, tmp_path_factory)
    assert lite.encoder.tokens.dtype == np.float64
    ref, ref_scores = fairseq_best(model, d, src, lengths, *setting)
    got, scores = lite_best(lite, src, setting)
    assert got == ref
    torch.testing.assert_close(scores, ref_scores)
    _, _, a, b, _ = setting
    if b == 15:
        assert min(map(len, ref)) < b  # some end early


def test_unk_penalty_and_unnormalized_scores(tmp_path_factory):
    lite, model, d, src, lengths = exported("pre_norm_untied", tmp_path_factory)
    for setting in ((5, 1.0, 0.0, 15, 1), (1, 1.0, 0.0, 15, 1)):
        for kw, lite_kw in (
            (dict(unk_penalty=-3.0), dict(unk_penalty=-3.0)),
            (dict(normalize_scores=False), dict(normalize_scores=False)),
        ):
            ref, ref_scores = fairseq_best(model, d, src, lengths, *setting, **kw)
            got, scores = lite_best(lite, src, setting, **lite_kw)
            assert got == ref
            torch.testing.assert_close(scores, ref_scores)


def test_batches_of_any_size_and_a_tiny_vocabulary(tmp_path):
    """One sentence, then a wider batch, through one Search; beam 10 over 8
    symbols is capped at 7 and runs out of finite candidates."""
    model, d, _, _ = random_model("post_norm_untied")
    export_model(model, d, d, tmp_path / "m")
    lite = Model(tmp_path / "m")
    search = Search(lite, Options(beam=5, max_len_b=15))
    for n, seed, longest in ((1, 4, 5), (3, 5, 14)):
        src, lengths = left_padded(random_sources(n, seed, longest=longest), d)
        ref, _ = fairseq_best(model, d, src, lengths, 5, 1.0, 0.0, 15, 1)
        assert [h for h, _ in search.translate(_ids(src, d))] == ref
    assert search.translate([]) == []

    torch.manual_seed(0)
    small = build("delight", src_vocab=8, **TINY_SHAPE, **DROPOUT_OFF).double().eval()
    d8 = make_dictionary(8)
    export_model(small, d8, d8, tmp_path / "m8")
    lite8 = Model(tmp_path / "m8")
    assert Search(lite8, Options(beam=10)).options.beam == 7
    src, lengths = left_padded(random_sources(3, seed=2, vocab=8), d8)
    for setting in ((10, 1.0, 0.0, 6, 1), (10, 1.0, 0.0, 6, 3)):
        ref, ref_scores = fairseq_best(small, d8, src, lengths, *setting)
        got, scores = lite_best(lite8, src, setting)
        assert got == ref
        torch.testing.assert_close(scores, ref_scores)
    with pytest.raises(ValueError, match="min_len"):
        Search(lite8, Options(max_len_b=2, min_len=3)).translate([[4, 5]])


def _ids(src, d):
    """A left-padded batch back to lists of ids without eos."""
    return [[t for t in row if t != d.pad()][:-1] for row in src.tolist()]


def test_top_k_takes_the_lower_index_among_equals():
    scores = np.array(
        [[0.0, -1.0, 0.0, -np.inf, 0.0], [-np.inf] * 4 + [-2.0]], np.float32
    )
    values, index = top_k(scores, 2)
    assert index.tolist() == [[0, 2], [4, 0]]
    assert values.tolist() == [[0.0, 0.0], [-2.0, -np.inf]]
    values, index = top_k(scores, 5)
    assert index.tolist() == [[0, 2, 4, 1, 3], [4, 0, 1, 2, 3]]


def test_vocabulary_is_fairseqs_dictionary():
    d = Dictionary()
    for w in ("▁Ein", "▁Mann", "Hau@@", "s", "<x>", "▁."):
        d.add_symbol(w)
    d.finalize()
    v = Vocabulary(
        dict(symbols=d.symbols, pad=d.pad(), eos=d.eos(), unk=d.unk(), bos=d.bos())
    )
    for line in ("▁Ein  ▁Mann\t▁. ", "Hau@@ s ▁neu", "", " <x> <unk> </s>"):
        ids = d.encode_line(line, add_if_not_exist=False, append_eos=False).tolist()
        assert v.encode(line) == ids
        hyp = ids + [d.eos(), d.bos()]
        for symbol in (None, "sentencepiece", "subword_nmt", "none"):
            assert v.string(hyp, symbol) == d.string(torch.tensor(hyp), symbol)
    with pytest.raises(ValueError, match="post-processing"):
        v.string([4], "wordpiece")


# -- the translator and the command on a trained model ------------------------


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """A trained whitespace-split model (as tests/test_translate.py's),
    exported: (checkpoint folder, data-bin, exported folder, sources)."""
    work = tmp_path_factory.mktemp("lite_translate")
    ckpt, data = save_checkpoint(work, synthetic_pairs(2000, seed=1), steps=150)
    out = work / "lite"
    code = (
        "import sys; from delight_fairseq.inference.export import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    rc, _, err = run_python("-c", code, ckpt.parent, "--out", out)
    assert rc == 0, err
    assert "exported" in err
    test = synthetic_pairs(30, seed=7)
    return ckpt.parent, data, out, [s for s, _ in test]


def test_translations_equal_the_engines(words):
    ckpt, _, out, sources = words
    lines = sources + ["", " ".join([sources[0]] * 8), "ein \udcff" + sources[1]]
    for beam in (1, 5):
        engine = tr.Translator(ckpt, beam=beam, bpe="none", batch_tokens=60)
        lite = LiteTranslator(out, beam=beam, bpe="none", batch_tokens=60, threads=1)
        assert lite.translate(lines) == engine.translate(lines)
        assert lite.stats.truncated == [len(sources) + 2]
        assert lite.stats.invalid_utf8 == [len(sources) + 3]
        assert lite.stats.empty == 1


def run_lite(*args, stdin=b""):
    """delight-lite in a process of its own, which reports what it imported."""
    code = (
        "import sys; from delight_lite.cli import main; rc = main(); "
        "gone = [m for m in ('torch', 'fairseq') if m in sys.modules]; "
        "print('imported:', gone, file=sys.stderr); sys.exit(rc)"
    )
    return run_python("-c", code, *args, stdin=stdin)


def test_cli_without_torch(words, tmp_path):
    ckpt, _, out, sources = words
    lines = [s.encode() for s in sources[:6]]
    lines[2:2] = [b""]
    lines[4] = b"ein \xff" + lines[4]
    stdin = b"\n".join(lines)  # the last line without its newline
    rc, got, err = run_lite(out, "--beam", "5", "--threads", "1", stdin=stdin)
    assert rc == 0, err
    assert "imported: []" in err  # neither torch nor fairseq
    engine = tr.Translator(ckpt, beam=5, bpe="none")
    assert got.decode("utf-8").split("\n") == engine.translate(lines) + [""]
    rc, got2, err2 = run_lite(
        out, "--workers", "2", "--batch-tokens", "30", stdin=stdin
    )
    assert rc == 0, err2
    assert got2 == got and "imported: []" in err2 and "worker processes" in err2
    assert "invalid UTF-8 on line 5 of the input" in err
    assert f"delight-lite: {len(lines)} sentences" in err.strip().splitlines()[-2]

    src = tmp_path / "in.txt"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    rc, _, err = run_lite(out, "-i", src, "-o", tmp_path / "o.txt", "-q", "--beam", "1")
    assert rc == 0, err
    assert (tmp_path / "o.txt").read_text().splitlines() == tr.Translator(
        ckpt, beam=1, bpe="none"
    ).translate(sources)
    assert "INFO" not in err

    rc, _, err = run_lite(tmp_path, "-q")
    assert rc == 2 and "holds no exported model" in err and "delight-export" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes((out / "model.json").read_bytes())
    (broken / "weights.npz").write_bytes(b"not a zip file")
    for workers in ("1", "2"):
        rc, _, err = run_lite(broken, "-q", "--workers", workers)
        assert rc == 2 and "cannot be read" in err and "export the checkpoint" in err


def test_worker_processes(words):
    """--workers: batches decoded in spawned processes, the same translations
    in the same order; a batch that fails comes back as an error and the
    worker serves on; a worker that dies is replaced."""
    from delight_lite.workers import WorkerError, Workers

    ckpt, _, out, sources = words
    lines = sources + ["", " ".join([sources[0]] * 8)]
    one = LiteTranslator(out, beam=5, bpe="none", batch_tokens=40, threads=1)
    two = LiteTranslator(out, beam=5, bpe="none", batch_tokens=40, workers=2)
    try:
        assert two.translate(lines) == one.translate(lines)
        assert two.stats.truncated == one.stats.truncated == [len(lines)]
    finally:
        two.close()
    assert len(two.workers.peaks) == 2 and min(two.workers.peaks) > 0

    ids = [one.source.encode(s) for s in sources[:3]]
    expected = [h for h, _ in one.search.translate(ids)]
    with Workers(1, out, one.search.options) as workers:
        with pytest.raises(WorkerError, match="IndexError"):
            workers.search([[10**6]])  # an id beyond the vocabulary
        assert workers.search(ids) == expected  # it serves on
        workers._live[0][0].kill()
        with pytest.raises(WorkerError, match="died"):
            workers.search(ids)
        assert workers.search(ids) == expected  # its replacement
    with pytest.raises(WorkerError, match="closed"):
        workers.search(ids)
    with pytest.raises(TranslateError, match="holds no exported model"):
        LiteTranslator(ckpt, workers=2)
