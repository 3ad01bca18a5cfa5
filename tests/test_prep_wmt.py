"""The WMT recipes on real text: WMT'16 En-Ro on the shared Europarl sample with
the real newsdev2016 / newstest2016, and WMT'14 (En-De, En-Fr) on a tiny local
training corpus in the release's layout with the real newstest2014 as test."""

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from fairseq.data import data_utils

from delight_fairseq.catalog import BENCHMARKS
from delight_fairseq.tools.prep.binarize import read_stamp
from delight_fairseq.tools.prep.datasets import wmt14, wmt16
from delight_fairseq.tools.prep.pipeline import Options
from delight_fairseq.tools.prep.releases import wmt14_train

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


def _lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def _n_binarized(dest: Path, split: str, direction: str, lang: str) -> int:
    return len(
        data_utils.load_indexed_dataset(str(dest / f"{split}.{direction}.{lang}"), None)
    )


def test_wmt16_ro_en_is_binarized_romanian_to_english(shared_data, tmp_path):
    """WMT'16 Ro-En, the catalog's reversed record: the same corpora and steps,
    binarized ro -> en."""
    dest = tmp_path / "data-bin" / "wmt16_ro_en"
    opts = Options(
        dest=dest,
        raw=shared_data / "wmt16-en-ro",
        train=["train-sample-europarl10k"],
        subwords=2000,
        workers=2,
    )
    result = wmt16(opts, BENCHMARKS["wmt16_ro_en"])
    assert result.report["pairs"] == {"train": 9_983, "valid": 1_999, "test": 1_999}
    for lang in ("ro", "en"):
        assert _n_binarized(dest, "test", "ro-en", lang) == 1_999
    assert (dest / "dict.en.txt").read_text() == (dest / "dict.ro.txt").read_text()


def test_wmt16_en_ro_sample(shared_data, tmp_path):
    raw = shared_data / "wmt16-en-ro"
    dest = tmp_path / "data-bin" / "wmt16_en_ro"
    opts = Options(
        dest=dest, raw=raw, train=["train-sample-europarl10k"], subwords=2000, workers=2
    )
    result = wmt16(opts, BENCHMARKS["wmt16_en_ro"])
    assert not result.skipped
    # the sample's one pair with an empty side, and 16 over 80 words, are
    # removed, and reported (measured on the shared sample)
    clean = result.report["cleaning"]["train"]
    assert (clean["total"], clean["empty"], clean["too_long"]) == (10_000, 1, 16)
    assert clean["kept"] == 9_983 == result.report["pairs"]["train"]
    assert result.report["pairs"]["valid"] == result.report["pairs"]["test"] == 1_999
    for split, n in (("train", 9_983), ("valid", 1_999), ("test", 1_999)):
        for lang in ("en", "ro"):
            assert _n_binarized(dest, split, "en-ro", lang) == n
    # one joined dictionary; the sentencepiece model ships with the binaries
    assert (dest / "dict.en.txt").read_text() == (dest / "dict.ro.txt").read_text()
    assert (dest / "spm.model").is_file()
    # Romanian cedillas (Europarl) became commas (the test sets' letters)
    pre = Path(f"{dest}.work") / "text" / "pre"
    train_ro = (pre / "train.ro").read_text(encoding="utf-8")
    assert "ş" not in train_ro and "ș" in train_ro
    # the pieces decode back to the normalized text
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(dest / "spm.model"))
    pieces = _lines(Path(f"{dest}.work") / "text" / "test.ro")
    original = _lines(pre / "test.ro")
    same = sum(sp.decode(p.split()) == o for p, o in zip(pieces, original))
    assert same >= 0.99 * len(original)  # sentencepiece's NFKC may change a few

    # a second run finds the stamp and does nothing
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    again = wmt16(opts, BENCHMARKS["wmt16_en_ro"])
    assert again.skipped and again.report == read_stamp(dest)["report"]
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def _tar(path: Path, files: dict) -> None:
    with tarfile.open(path, "w:gz" if path.suffix == ".tgz" else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def wmt14_raw(shared: Path, raw: Path, other: str, per: int) -> int:
    """The release's training corpora, ``per`` Multi30k pairs each, in every
    layout the recipe reads: the first extracted (``training/europarl-v7...``),
    CommonCrawl and Gigaword as their release archives (Gigaword: a tar of
    gzipped files), the others as plain files; newstest2014 (real) as plain
    text. Returns the number of training pairs."""
    parts = wmt14_train(other)
    m30k = {
        lang: _lines(shared / "multi30k" / f"train.{lang}") for lang in ("en", other)
    }
    for i, part in enumerate(parts):
        data = {
            lang: "".join(
                x + "\n" for x in m30k[lang][i * per : (i + 1) * per]
            ).encode()
            for lang in ("en", other)
        }
        if part.archive.endswith(".tar") or "commoncrawl" in part.plain:
            _tar(
                raw / part.archive,
                {
                    part.members[lang]: gzip.compress(d)
                    if part.members[lang].endswith(".gz")
                    else d
                    for lang, d in data.items()
                },
            )
            continue
        for lang, d in data.items():
            path = raw / (part.members[lang] if i == 0 else f"{part.plain}.{lang}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(d)
    for lang in ("en", other):
        name = f"newstest2014-{other}en.{lang}"
        (raw / name).symlink_to(shared / "wmt14-newstest2014" / name)
    return per * len(parts)


@pytest.mark.parametrize("other", ["de", "fr"])
def test_wmt14_on_newstest2014(shared_data, tmp_path, other):
    raw = tmp_path / "raw"
    # enough lines for a few valid pairs: every 100th (En-Fr: 1333rd)
    every = 100 if other == "de" else 1333
    n_train = wmt14_raw(shared_data, raw, other, per=400 if other == "de" else 540)
    dest = tmp_path / "data-bin" / f"wmt14_en_{other}"
    result = wmt14(
        Options(dest=dest, raw=raw, subwords=600, workers=1),
        BENCHMARKS[f"wmt14_en_{other}"],
    )
    text = Path(f"{dest}.work") / "text"

    # valid = every 100th (En-Fr: 1333rd) tokenized training line, before cleaning
    for lang in ("en", other):
        tok = _lines(text / "tmp" / f"train.tags.tok.{lang}")
        assert len(tok) == n_train
        assert _lines(text / "pre" / f"valid.{lang}") == tok[every - 1 :: every]
    # the test side: all of newstest2014, Moses-tokenized with -a
    test_en = _lines(text / "pre" / "test.en")
    assert len(test_en) == 3003
    assert sum(" @-@ " in x for x in test_en) > 100
    assert any("&quot;" in x or "&apos;" in x for x in test_en)
    # BPE, then cleaning of train and valid only (reported), test untouched
    assert [x.replace("@@ ", "") for x in _lines(text / "test.en")] == test_en
    assert set(result.report["cleaning"]) == {"train", "valid"}
    pairs = result.report["pairs"]
    assert pairs["test"] == 3003
    assert pairs["train"] == result.report["cleaning"]["train"]["kept"]
    assert _n_binarized(dest, "test", f"en-{other}", other) == 3003
    assert (dest / "dict.en.txt").read_text() == (
        dest / f"dict.{other}.txt"
    ).read_text()
    assert (dest / "code").read_text().startswith("#version: 0.2\n")
