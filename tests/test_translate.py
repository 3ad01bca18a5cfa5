"""delight-translate (delight_fairseq/inference/cli.py) and its Python API
(translate.py, with loading.py, progress.py and text.py): raw text in,
detokenized translations out, one line per line in input order, whatever the
input holds (empty lines, invalid UTF-8, over-long lines); the engine's output
equals fairseq's SequenceGenerator's (--fp32-reference).

The models are tiny DeLighTs trained in-process for a few seconds on the
synthetic task (tools/synthetic.py), saved as fairseq checkpoints with their
dictionaries: one on whitespace-split words (no subword model), one on a tiny
sentencepiece model found in its data-bin.
"""

import logging
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from fairseq.data import Dictionary

from delight_fairseq.inference import loading
from delight_fairseq.inference import translate as tr
from delight_fairseq.inference.text import build_codec, read_prep_settings
from delight_fairseq.tools.synthetic import sentence_pair

from helpers import NO_DROPOUT, REPO, TINY_MODEL, USER_DIR, train_on_pairs

MAX_SOURCE_POSITIONS = 32  # small, so that an over-long line is easy to write


@pytest.fixture(scope="module", autouse=True)
def eager_glt():
    """The eager GLT ops, here and in the processes the tests start: a process
    that finds the fused kernel's build cache stale spends about 20 s compiling
    it (tests/test_fused.py and tests/test_engine.py cover the kernel)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELIGHT_FUSED_GLT", "0")
        yield


def synthetic_pairs(n, seed):
    rng = random.Random(seed)
    return [sentence_pair(rng) for _ in range(n)]


def save_checkpoint(folder: Path, pairs, steps: int, name="checkpoint_best.pt"):
    """Train a tiny DeLighT in-process on ``pairs`` (space-separated symbols)
    and save it as fairseq does, with its dictionaries in ``folder/bin``
    (recorded in the checkpoint as its data). Returns (checkpoint, data-bin)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    d = Dictionary()
    for s, t in pairs:
        for w in f"{s} {t}".split():
            d.add_symbol(w)
    d.finalize()
    data = folder / "bin"
    data.mkdir(parents=True, exist_ok=True)
    d.save(str(data / "dict.src.txt"))
    d.save(str(data / "dict.tgt.txt"))
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(data), "--user-dir", USER_DIR, "--task", "translation", "-s", "src",
         "-t", "tgt", *TINY_MODEL, *NO_DROPOUT,
         "--max-source-positions", str(MAX_SOURCE_POSITIONS),
         "--max-target-positions", "64"],
    )  # fmt: skip
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    model = task.build_model(cfg.model)
    train_on_pairs(model, d, pairs, steps, batch_size=64)
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "args": None,
        "model": model.state_dict(),
        "optimizer_history": [
            {
                "criterion_name": "label_smoothed_cross_entropy",
                "optimizer_name": "Adam",
                "lr_scheduler_state": {"best": None},
                "num_updates": steps,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1}},
    }
    ckpt = folder / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    torch.save(state, ckpt / name)
    return ckpt / name, data


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


@pytest.mark.parametrize("beam", [1, 5])
def test_engine_equals_fp32_reference(words, beam):
    ckpt, _, sources, _ = words
    lines = sources + ["", " ".join(sources[:6])]
    engine = tr.Translator(ckpt, beam=beam, bpe="none", lenpen=0.8)
    reference = tr.Translator(
        ckpt, beam=beam, bpe="none", lenpen=0.8, fp32_reference=True
    )
    assert reference.engine is None
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


def test_subword_nmt_and_moses_as_prep_recorded(tmp_path):
    """A data-bin with BPE codes and prep.json: the source goes through the
    recorded test-set steps (here tokenize + lowercase) and the BPE; the target
    is joined and detokenized."""
    import json

    (tmp_path / "code").write_text("#version: 0.2\nh e\nhe l\n", encoding="utf-8")
    steps = {"lang": "en", "tokenize": True, "lowercase": True}
    prep = {"fingerprint": {"direction": "en-de", "settings": {
        "bpe_merges": 2, "test_steps": {"en": steps, "de": {**steps, "lang": "de"}}}}}  # fmt: skip
    (tmp_path / "prep.json").write_text(json.dumps(prep), encoding="utf-8")
    settings = read_prep_settings(tmp_path)
    codec = build_codec("en", "de", [tmp_path], prep_settings=settings)
    assert codec.kind == "subword_nmt" and codec.detokenize == "de"
    assert codec.encode("Hello, HE") == "hel@@ l@@ o , h@@ e"
    from fairseq.data.data_utils import post_process

    assert codec.decode(
        post_process("ha@@ us , &quot; da@@ s &quot;", "subword_nmt")
    ) == ('haus, "das"')
    # without prep.json: Moses tokenization, as fairseq's recipes do
    (tmp_path / "prep.json").unlink()
    codec = build_codec("en", "de", [tmp_path], prep_settings=None)
    assert codec.encode("Hello, he") == "H@@ e@@ l@@ l@@ o , h@@ e"  # not lowercased
    assert (
        build_codec("en", "de", [tmp_path], tokenizer="none").encode("a,b")
        == "a@@ ,@@ b"
    )


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """A model on a tiny sentencepiece model, with spm.model in its data-bin."""
    from delight_fairseq.tools.prep.subword import spm_line, train_sentencepiece
    from delight_fairseq.tools.synthetic import write_corpus

    work = tmp_path_factory.mktemp("spm")
    raw = write_corpus(work / "raw", 1000, 0, 0, seed=13)
    model = train_sentencepiece(
        [raw / "train.src", raw / "train.tgt"], work / "spm", 60, "unigram"
    )
    pairs = [
        (spm_line(str(model), s), spm_line(str(model), t))
        for s, t in synthetic_pairs(2000, seed=1)
    ]
    ckpt, data = save_checkpoint(work, pairs, steps=80)
    (data / "spm.model").write_bytes(model.read_bytes())
    return ckpt, data


def test_sentencepiece_from_the_data_bin(words, pieces):
    from fairseq.data.data_utils import post_process

    ckpt, data = pieces
    sources = words[2][:8] + [""]
    t = tr.Translator(ckpt, beam=5)  # data-bin and spm.model found by themselves
    assert t.codec.kind == "sentencepiece" and t.codec.model == data / "spm.model"
    out = t.translate(sources)
    assert len(out) == len(sources) and out[-1] == ""
    assert all(o and "\u2581" not in o for o in out[:-1])
    # by hand: pieces -> ids -> the engine -> pieces joined
    for src, got in zip(sources[:3], out):
        pieces_in = t.codec.encode(src)
        assert " " in pieces_in.replace("\u2581", "")  # split into pieces
        ids = t.src_dict.encode_line(pieces_in, add_if_not_exist=False)
        hyp = t.engine.translate(ids.unsqueeze(0), torch.tensor([ids.numel()]))[0]
        assert got == post_process(t.tgt_dict.string(hyp), "sentencepiece")
    reference = tr.Translator(ckpt, beam=5, fp32_reference=True)
    assert reference.translate(sources) == out


# -- the command (a process each: slow) ------------------------------------------------


def run_translate(*args, stdin=b"", module="delight_fairseq.inference.cli"):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # DELIGHT_FUSED_GLT=0: eager_glt
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")


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
