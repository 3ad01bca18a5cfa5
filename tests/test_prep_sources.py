"""Finding each corpus in a release (plain, extracted, or inside the archive),
downloads that fail offline, and the SGML/XML and IWSLT tag formats."""

import gzip
import io
import tarfile
import urllib.error

import pytest

from delight_fairseq.catalog import BENCHMARKS
from delight_fairseq.tools.prep import sources
from delight_fairseq.tools.prep.corpus import DataError
from delight_fairseq.tools.prep.datasets import multi30k
from delight_fairseq.tools.prep.pipeline import Options
from delight_fairseq.tools.prep.releases import MULTI30K_URL, wmt14_test

from prep_helpers import write


def test_segments_and_iwslt_tags():
    xml = [
        '<doc docid="1">',
        "<title>Ignored</title>",
        '<seg id="1">  Hallo Welt  </seg>',
        '<seg id="22">It’s here.</seg>  ',
    ]
    assert list(sources.segments(xml)) == ["Hallo Welt", "It’s here."]
    tags = ["<url>http://x</url>", "<talkid>3</talkid>", "<keywords>a</keywords>"]
    tags += [
        "<title>Der Titel</title>",
        "<description>Worum es geht</description>",
        "Text",
    ]
    assert list(sources.iwslt_tags(tags)) == ["Der Titel", "Worum es geht", "Text"]


def test_locate_plain_extracted_and_archived(tmp_path):
    part = wmt14_test("de")  # newstest2014-deen, en source, de reference
    raw = tmp_path / "raw"
    write(raw / "newstest2014-deen.en", "plain\n")
    assert sources.locate(part, "en", raw, tmp_path) == raw / "newstest2014-deen.en"
    sgm = '<srcset>\n<seg id="1"> Aus dem Archiv </seg>\n</srcset>\n'
    write(raw / "test-full" / "newstest2014-deen-ref.de.sgm", sgm)
    found = sources.locate(part, "de", raw, tmp_path)
    assert found == raw / "test-full" / "newstest2014-deen-ref.de.sgm"
    assert list(sources.read(found)) == ["Aus dem Archiv"]
    # inside the release archive itself, read in place
    (raw / "test-full" / "newstest2014-deen-ref.de.sgm").unlink()
    with tarfile.open(raw / "test-full.tgz", "w:gz") as tar:
        data = sgm.encode()
        info = tarfile.TarInfo("test-full/newstest2014-deen-ref.de.sgm")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    found = sources.locate(part, "de", raw, tmp_path)
    assert isinstance(found, sources.Member)
    assert list(sources.read(found)) == ["Aus dem Archiv"]
    # gzipped plain text
    write(raw / "m.de.gz", gzip.compress("eins\nzwei\n".encode()))
    found = sources.locate(sources.Part("m"), "de", raw, tmp_path)
    assert list(sources.read(found)) == ["eins", "zwei"]


def test_locate_missing_lists_what_it_looked_for(tmp_path):
    with pytest.raises(DataError) as e:
        sources.locate(wmt14_test("de"), "de", tmp_path, tmp_path)
    msg = str(e.value)
    assert "newstest2014-deen.de" in msg and "test-full.tgz" in msg
    assert "http://statmt.org/wmt14/test-full.tgz" in msg and "--raw" in msg


def test_corrupt_archive_is_a_data_error(tmp_path):
    text = "".join(f"line {i} {i * i}\n" for i in range(5000)).encode()
    bad = write(tmp_path / "x.gz", gzip.compress(text)[:2000])  # truncated
    with pytest.raises(DataError, match="unreadable archive"):
        list(sources.read(sources.Member(bad)))


def test_offline_download_says_what_to_do(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as e:
        multi30k(
            Options(dest=tmp_path / "data-bin" / "m", workers=1),
            BENCHMARKS["multi30k_de_en"],
        )
    msg = str(e.value)
    assert f"{MULTI30K_URL}/train.de.gz" in msg and "--raw" in msg and "offline" in msg
    assert not list((tmp_path / "data-bin").rglob("*.part"))
