"""The data-preparation library, step by step: validation errors (each naming
its file), cleaning counts, splitting, and the tokenization rules. Sources and
downloads: test_prep_sources.py; binarization: test_prep_binarize.py; the
recipes on real corpora: test_prep_iwslt14.py, test_prep_wmt.py,
test_prep_multi30k.py."""

import re
from pathlib import Path

import pytest

from delight_fairseq.catalog import BENCHMARKS
from delight_fairseq.tools.prep import cli, corpus
from delight_fairseq.tools.prep.corpus import CleanReport, DataError
from delight_fairseq.tools.prep.datasets import iwslt14
from delight_fairseq.tools.prep.pipeline import Options
from delight_lite.moses import MosesSteps

from helpers import REPO
from prep_helpers import raw_pair, write

# ---------------------------------------------------------------- validation


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"nope\.de: file not found"):
        list(corpus.iter_lines(tmp_path / "nope.de"))


def test_undecodable_bytes_name_file_and_line(tmp_path):
    path = write(tmp_path / "train.de", "gut\nschön\n".encode("utf-8") + b"sch\xf6n\n")
    with pytest.raises(DataError) as e:
        list(corpus.iter_lines(path))
    msg = str(e.value)
    assert f"{path}, line 3" in msg and "0xf6" in msg and "iconv" in msg


def test_errors_cross_worker_processes(tmp_path):
    path = write(
        tmp_path / "train.de",
        b"".join(b"zeile %d\n" % i for i in range(2000)) + b"\xff\n",
    )
    with pytest.raises(DataError, match=r"train\.de, line 2001: not valid UTF-8"):
        corpus.transform(
            [corpus.iter_lines(path)], tmp_path / "out", str.upper, workers=2
        )
    # and the order of the lines survives the processes
    path.write_bytes(b"".join(b"zeile %d\n" % i for i in range(2000)))
    assert corpus.transform(
        [corpus.iter_lines(path)], tmp_path / "out", str.upper, workers=2
    ) == [2000]
    assert (tmp_path / "out").read_text().splitlines()[1234] == "ZEILE 1234"


def test_lines_end_at_newline_only(tmp_path):
    path = write(tmp_path / "x", "a\rb\nc")  # no final newline either
    assert list(corpus.iter_lines(path)) == ["a\rb", "c"]


def test_misaligned_and_empty_corpora(tmp_path):
    with pytest.raises(DataError, match=r"a\.de has 3 lines but \S*b\.en has 2"):
        corpus.check_aligned(tmp_path / "a.de", tmp_path / "b.en", 3, 2)
    with pytest.raises(DataError, match=r"b\.en: empty corpus"):
        corpus.check_aligned(tmp_path / "a.de", tmp_path / "b.en", 3, 0)


def _multi30k_raw(folder: Path, n=20):
    for split in ("train", "val", "test_2016_flickr"):
        lines = [f"{split} satz {i} ." for i in range(n)]
        raw_pair(folder, split, lines, [x.replace("satz", "sentence") for x in lines])


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda raw: write(raw / "val.en", "only one line\n"),
            r"val\.de has 20 lines but .*val\.en has 1",
        ),
        (lambda raw: write(raw / "train.en", ""), r"train\.en: empty corpus"),
        (
            lambda raw: write(raw / "train.de", b"ok\n\xff\xfe\n"),
            r"train\.de, line 2: not valid UTF-8",
        ),
        (
            lambda raw: (raw / "test_2016_flickr.de").unlink(),
            r"test_2016_flickr\.de: not found in .*looked for",
        ),
    ],
    ids=["misaligned", "empty", "undecodable", "missing"],
)
def test_recipe_stops_with_the_file_named(tmp_path, caplog, damage, message):
    raw = tmp_path / "raw"
    _multi30k_raw(raw)
    damage(raw)
    dest = tmp_path / "data-bin" / "m"
    assert (
        cli.main(
            ["multi30k_de_en", "--raw", str(raw), "--dest", str(dest), "--workers", "1"]
        )
        == 1
    )
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and re.search(message, errors[0]), caplog.text
    assert not dest.exists()
    assert not list(dest.parent.glob(".m*"))  # no partial output either


def test_valid_override_where_the_recipe_derives_it(tmp_path):
    with pytest.raises(DataError, match="--valid: this recipe makes its valid set"):
        iwslt14(
            Options(dest=tmp_path / "d", raw=tmp_path, valid="dev"),
            BENCHMARKS["iwslt14_de_en"],
        )


# ------------------------------------------------------------------ cleaning


def test_clean_counts_each_reason_in_moses_order():
    pairs = [
        ("ein kleiner test", "a small test"),  # kept
        ("  viele   leerzeichen ", "many\tspaces"),  # kept, spaces collapsed
        ("", "empty"),  # empty
        ("   ", "blank"),  # empty after collapsing
        ("a " * 6, "b " * 5),  # too long (max 5) before anything else
        ("eins", "one two three"),  # ratio 3 > 1.5
        ("x" * 13, "wort"),  # a word over 12 characters
        ("pipe|weg da", "pipe gone"),  # the pipe is dropped: kept as "pipeweg da"
    ]
    report = CleanReport("t")
    kept = list(
        corpus.clean_pairs(pairs, report, max_len=5, ratio=1.5, max_word_length=12)
    )
    assert kept == [
        ("ein kleiner test", "a small test"),
        ("viele leerzeichen", "many spaces"),
        ("pipeweg da", "pipe gone"),
    ]
    assert report.as_dict() == {
        "corpus": "t",
        "total": 8,
        "kept": 3,
        "empty": 2,
        "too_short": 0,
        "too_long": 1,
        "ratio": 1,
        "long_word": 1,
    }
    assert report.removed == 5
    assert "removed 5" in report.summary()


def test_clean_min_length_and_factored_input():
    report = CleanReport("t")
    list(corpus.clean_pairs([("a b", "c d"), ("a", "b c")], report, min_len=2, ratio=9))
    assert report.too_short == 1
    # a pipe in the first pair marks factored input: pipes are kept
    report = CleanReport("t")
    kept = list(corpus.clean_pairs([("a|X b|Y", "c|Z")], report, ratio=9))
    assert kept == [("a|X b|Y", "c|Z")]


def test_clean_files_logs_the_report_and_refuses_to_empty(tmp_path, caplog):
    raw_pair(tmp_path, "in", ["gut", ""], ["good", "lost"])
    caplog.set_level("INFO")
    report = corpus.clean_files(
        tmp_path / "in.de",
        tmp_path / "in.en",
        tmp_path / "o.de",
        tmp_path / "o.en",
        "x",
    )
    assert (report.kept, report.empty) == (1, 1)
    assert "x: kept 1 of 2 pairs, removed 1 (empty 1" in caplog.text
    raw_pair(tmp_path, "bad", ["", " "], ["a", "b"])
    with pytest.raises(DataError, match="removed every pair"):
        corpus.clean_files(
            tmp_path / "bad.de",
            tmp_path / "bad.en",
            tmp_path / "p.de",
            tmp_path / "p.en",
            "y",
        )


def test_split_every(tmp_path):
    write(tmp_path / "all", "".join(f"{i}\n" for i in range(1, 8)))
    assert corpus.split_every(tmp_path / "all", 3, tmp_path / "v", tmp_path / "t") == (
        2,
        5,
    )
    assert (tmp_path / "v").read_text() == "3\n6\n"
    assert (tmp_path / "t").read_text() == "1\n2\n4\n5\n7\n"


# --------------------------------------------------- formats and tokenization


def test_moses_steps():
    tok = MosesSteps("en", apostrophe=True, lowercase=True)
    # XML escaping, the apostrophe fix, lowercasing, and the period of the
    # last word split off as tokenizer.perl does even after "U.S"
    assert tok("It’s in the U.S.") == "it &apos;s in the u.s ."
    assert tok("A & B <c>") == "a &amp; b &lt; c &gt;"
    assert MosesSteps("de")("Dr. Müller kam.") == "Dr. Müller kam ."
    assert MosesSteps("en", aggressive_dashes=True)("well-known") == "well @-@ known"
    assert MosesSteps("en")("   ") == "   "  # blank lines pass through
    norm = MosesSteps(
        "en", normalize_punct=True, remove_non_printing=True, tokenize=False
    )
    assert norm("«Hi»\u200bthere") == '"Hi" there'
    ro = MosesSteps("ro", tokenize=False, romanian_commas=True)
    assert ro("Ştiinţă şi ţară") == "Știință și țară"


def test_package_is_not_imported_by_the_plugin():
    init = (REPO / "delight_fairseq" / "__init__.py").read_text()
    assert "prep" not in init
