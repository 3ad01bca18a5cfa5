"""delight-translate (delight_fairseq/inference/cli.py) and its Python API
(translate.py, with loading.py, progress.py and text.py): raw text in,
detokenized translations out, one line per line in input order, whatever the
input holds (empty lines, invalid UTF-8, over-long lines); the engine's output
equals fairseq's SequenceGenerator's (--fp32-reference).

The model is a tiny DeLighT on whitespace-split words (no subword model), trained
in-process for a few seconds on the synthetic task (translate_helpers.py); the
subword codecs are in test_translate_codecs.py.
"""

import logging
import sys
import types

import pytest
import torch

from delight_fairseq.inference import loading
from delight_fairseq.inference import translate as tr

from translate_helpers import (  # noqa: F401 (eager_glt: an autouse fixture)
    MAX_SOURCE_POSITIONS,
    eager_glt,
    run_python,
    save_checkpoint,
    synthetic_pairs,
)


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """A whitespace-split model that has learned the task: (checkpoint folder,
    data-bin, test sources, their references)."""
    work = tmp_path_factory.mktemp("translate")
    ckpt, data = save_checkpoint(work, synthetic_pairs(2000, seed=1), steps=150)
    test = synthetic_pairs(30, seed=7)
    return ckpt.parent, data, [s for s, _ in test], [t for _, t in test]


@pytest.fixture(scope="module")
def translator(words):
    ckpt, _, _, _ = words
    return tr.Translator(ckpt, beam=5, bpe="none")


def mixed_input(sources):
    """The first 10 sources as bytes, with an empty line (line 3), a blank one
    (line 6) and a CRLF line ending (line 8)."""
    lines = [s.encode() for s in sources[:10]]
    lines[2:2] = [b""]
    lines[5:5] = [b"   \t"]
    lines[7] = lines[7] + b"\r"
    return lines


def test_api_keeps_order_and_empty_lines(words, translator):
    _, _, sources, refs = words
    lines = list(sources)
    lines[3:3] = ["", "  "]
    out = translator.translate(lines)
    assert len(out) == len(lines)
    assert out[3] == out[4] == ""
    got = out[:3] + out[5:]
    assert sum(g == r for g, r in zip(got, refs)) >= 0.8 * len(refs)  # it learned
    assert translator.stats.sentences == len(lines)
    assert translator.stats.empty == 2 and translator.stats.translated == len(refs)
    # tiny chunks and batches: other batches, the same translations in order
    small = tr.Translator(words[0], beam=5, bpe="none", chunk_lines=7, batch_tokens=30)
    assert small.translate(lines) == out
    assert tr.translate_lines(lines[:4], words[0], bpe="none") == out[:4]
    from delight_fairseq.inference import Translator  # exported by the package

    assert Translator is tr.Translator


def test_api_bytes_crlf_and_invalid_utf8(words, translator, caplog):
    _, _, sources, _ = words
    lines = mixed_input(sources)
    lines[1] = lines[1].replace(b" ", b" \xff ", 1)  # invalid UTF-8
    lines[9] = b"\xc3" + lines[9]  # a truncated sequence
    with caplog.at_level(logging.WARNING, logger="delight_fairseq"):
        out = translator.translate(lines)
    assert len(out) == len(lines)
    warnings = [r.getMessage() for r in caplog.records if "UTF-8" in r.getMessage()]
    assert len(warnings) == 1 and "lines 2, 10 " in warnings[0]
    assert translator.stats.invalid_utf8 == [2, 10]
    assert out[1] and out[9]  # replaced and translated, not dropped
    assert out[2] == out[5] == ""
    clean = [x.decode().rstrip("\r") for x in mixed_input(sources)]
    assert out[7] == translator.translate([clean[7]])[0]  # CRLF: \r dropped


def test_api_truncates_an_over_long_line(words, translator, caplog):
    _, _, sources, _ = words
    long = " ".join([sources[0]] * 8)
    assert len(long.split()) > MAX_SOURCE_POSITIONS
    lines = [sources[1], "", long, sources[2]]
    with caplog.at_level(logging.WARNING, logger="delight_fairseq"):
        out = translator.translate(lines)
    limit = MAX_SOURCE_POSITIONS - 1
    assert [r.getMessage() for r in caplog.records] == [
        f"line 3: {len(long.split())} source tokens, more than the model's {limit} "
        f"(max source positions {MAX_SOURCE_POSITIONS} less the eos): translating "
        f"its first {limit} tokens only"
    ]
    assert translator.stats.truncated == [3]
    assert out[2]  # translated, truncated
    truncated = " ".join(long.split()[:limit])
    assert out[2] == translator.translate([truncated])[0]
    assert out[0] == translator.translate([sources[1]])[0]


def test_a_line_that_fails_gives_an_empty_line(words, translator, monkeypatch, caplog):
    """A decoding error on one line: its batch is retried sentence by sentence,
    the line gets an empty output and an error naming it; the run goes on."""
    _, _, sources, _ = words
    search = translator._search
    unk = translator.src_dict.unk()

    def failing(batch):
        if any(unk in ids for ids in batch):
            raise RuntimeError("boom")
        return search(batch)

    monkeypatch.setattr(translator, "_search", failing)
    lines = sources[:6]
    lines[4] = "xyzzy " + lines[4]  # unknown word -> unk -> boom
    with caplog.at_level(logging.WARNING, logger="delight_fairseq"):
        out = translator.translate(lines)
    assert len(out) == 6 and out[4] == "" and all(out[:4]) and out[5]
    assert translator.stats.failed == [5] and translator.stats.translated == 5
    assert out[:4] == translator.translate(sources[:4])
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "line 5 could not be translated (RuntimeError: boom): an empty line is "
        "written in its place"
    ]


def test_many_unknown_tokens_warn(translator, caplog):
    with caplog.at_level(logging.WARNING, logger="delight_fairseq"):
        out = translator.translate(["Ein Mann fährt Fahrrad auf einer Straße ."] * 3)
    assert len(out) == 3
    assert "100% of the source tokens are unknown" in caplog.text


@pytest.mark.parametrize("matmul", ["auto", "torch", "onednn"])
@pytest.mark.parametrize("beam", [1, 5])
def test_engine_equals_fp32_reference(words, beam, matmul):
    from delight_fairseq.inference.matmul import onednn_available

    if matmul == "onednn" and not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    ckpt, _, sources, _ = words
    lines = sources + ["", " ".join(sources[:6])]
    engine = tr.Translator(ckpt, beam=beam, bpe="none", lenpen=0.8, matmul=matmul)
    reference = tr.Translator(
        ckpt, beam=beam, bpe="none", lenpen=0.8, fp32_reference=True
    )
    assert reference.engine is None
    assert engine.engine.matmul == matmul
    assert engine.translate(lines) == reference.translate(lines)


def test_workers_decode_batches_at_once_in_order(words, monkeypatch):
    """workers=2: two engines decode two batches at the same time, in two
    threads (a barrier makes the first two calls wait for each other), with one
    torch thread each; the translations are those of one engine, in order."""
    import threading

    from delight_fairseq.inference.engine import Engine

    ckpt, _, sources, _ = words
    lines = sources + ["", sources[0]]
    want = tr.Translator(ckpt, beam=5, bpe="none", batch_tokens=40).translate(lines)
    before = torch.get_num_threads()
    calls, barrier = [], threading.Barrier(2, timeout=30)
    plain = Engine.translate

    def spy(self, *args):
        calls.append((id(self), threading.get_ident()))
        if len(calls) <= 2:
            barrier.wait()  # raises, and the test fails, unless both run at once
        return plain(self, *args)

    try:
        two = tr.Translator(
            ckpt, beam=5, bpe="none", batch_tokens=40, threads=2, workers=2
        )
        assert torch.get_num_threads() == 1  # 2 threads shared by 2 workers
        monkeypatch.setattr(Engine, "translate", spy)
        assert two.translate(lines) == want
    finally:
        torch.set_num_threads(before)
    assert two.stats.failed == []
    assert len({engine for engine, _ in calls}) == 2
    assert len({thread for _, thread in calls}) == 2
    with pytest.raises(loading.TranslateError, match="--workers 2 runs several"):
        tr.Translator(ckpt, bpe="none", workers=2, fp32_reference=True)
    with pytest.raises(ValueError, match="workers is 0"):
        tr.Translator(ckpt, bpe="none", workers=0)


def test_int8_calls_the_quantize_hook(words, monkeypatch):
    calls = []

    def quantize_engine(engine):
        calls.append(engine)
        return engine

    fake = types.ModuleType(loading.QUANTIZE_MODULE)
    fake.quantize_engine = quantize_engine
    monkeypatch.setitem(sys.modules, loading.QUANTIZE_MODULE, fake)
    t = tr.Translator(words[0], bpe="none", int8=True)
    assert calls == [t.engine]
    assert t.translate(words[2][:2])[0]
    # absent: a clear error, whether or not quantize.py exists by now
    monkeypatch.setitem(sys.modules, loading.QUANTIZE_MODULE, None)
    with pytest.raises(loading.TranslateError, match="int8 decoding is not available"):
        tr.Translator(words[0], bpe="none", int8=True)
    with pytest.raises(loading.TranslateError, match="exclude each other"):
        tr.Translator(words[0], bpe="none", int8=True, fp32_reference=True)


def test_checkpoint_folder_resolution(words, tmp_path, caplog):
    ckpt, data, _, _ = words
    assert loading.resolve_checkpoint(ckpt) == ckpt / "checkpoint_best.pt"
    only_last = tmp_path / "last"
    only_last.mkdir()
    (only_last / "checkpoint_last.pt").symlink_to(ckpt / "checkpoint_best.pt")
    with caplog.at_level(logging.INFO, logger="delight_fairseq"):
        assert loading.resolve_checkpoint(only_last) == only_last / "checkpoint_last.pt"
    assert "checkpoint_last.pt of the folder" in caplog.text
    with pytest.raises(loading.TranslateError, match="neither checkpoint_best.pt"):
        loading.resolve_checkpoint(tmp_path)
    with pytest.raises(loading.TranslateError, match="no checkpoint at"):
        loading.resolve_checkpoint(tmp_path / "nothing.pt")
    # dictionaries given instead of a data-bin
    t = tr.Translator(
        only_last,
        src_dict=data / "dict.src.txt",
        tgt_dict=data / "dict.tgt.txt",
        bpe="none",
    )
    assert t.info["source_lang"] == "src" and t.info["target_lang"] == "tgt"


# -- the command (a process each: slow) ------------------------------------------------


def run_translate(*args, stdin=b"", module="delight_fairseq.inference.cli"):
    return run_python("-m", module, *args, stdin=stdin)


@pytest.mark.slow
def test_cli_stdin_with_bad_lines(words, translator):
    ckpt, _, sources, _ = words
    lines = mixed_input(sources)
    lines[3] = b"ein \xff" + lines[3]
    lines.insert(6, " ".join([sources[0]] * 8).encode())
    stdin = b"\n".join(lines)  # the last line without its newline
    rc, out, err = run_translate(ckpt, "--bpe", "none", "--threads", "1", stdin=stdin)
    assert rc == 0, err
    got = out.decode("utf-8").split("\n")
    assert got[-1] == "" and len(got) - 1 == len(lines)  # one line out per line in
    assert got[:-1] == translator.translate(lines)
    assert got[2] == "" and got[5] == ""
    warnings = [line for line in err.splitlines() if "| WARNING |" in line]
    assert len([w for w in warnings if "UTF-8" in w]) == 1
    assert "invalid UTF-8 on line 4 of the input" in err
    assert f"line 7: {len(lines[6].split())} source tokens" in err
    assert "(checkpoint_best.pt of the folder)" in err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith(f"delight-translate: {len(lines)} sentences")
    assert "sentences/s" in summary and "1 truncated" in summary


@pytest.mark.slow
def test_cli_file_in_file_out_equals_fp32_reference(words, tmp_path):
    ckpt, data, sources, _ = words
    src = tmp_path / "in.txt"
    src.write_text("\n".join(sources + [""] + sources[:5]) + "\n", encoding="utf-8")
    common = [ckpt / "checkpoint_best.pt", "--data", data, "--bpe", "none",
              "-i", src, "--chunk-lines", "9", "--batch-tokens", "50", "-q"]  # fmt: skip
    rc, _, err = run_translate(*common, "-o", tmp_path / "engine.txt")
    assert rc == 0, err
    rc, out, err2 = run_translate(*common, "--fp32-reference")
    assert rc == 0, err2
    engine = (tmp_path / "engine.txt").read_text(encoding="utf-8")
    assert engine == out.decode("utf-8")
    assert len(engine.splitlines()) == len(sources) + 6
    assert engine.splitlines()[len(sources)] == ""
    assert "INFO" not in err  # -q: the summary only
    assert err.strip().startswith("delight-translate: 36 sentences")
    # python -m delight_fairseq.inference.translate: the same command
    rc, _, err = run_translate(
        tmp_path / "missing",
        "--bpe",
        "none",
        module="delight_fairseq.inference.translate",
    )
    assert rc == 2 and "no checkpoint at" in err
    assert "RuntimeWarning" not in err
