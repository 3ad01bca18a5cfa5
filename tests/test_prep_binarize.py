"""The binarization step: atomic (never a half-written data-bin), idempotent
(a stamp of settings and input checksums), and what invalidates the stamp.
A stand-in for fairseq-preprocess makes these fast."""

import os
import sys
from pathlib import Path

import pytest

from delight_fairseq.tools.prep import binarize as bz
from delight_fairseq.tools.prep.pipeline import Options, Run
from delight_fairseq.tools.prep.sources import Part

from prep_helpers import raw_pair, write


def _multi30k_raw(folder: Path, n=20):
    for split in ("train", "val", "test_2016_flickr"):
        lines = [f"{split} satz {i} ." for i in range(n)]
        raw_pair(folder, split, lines, [x.replace("satz", "sentence") for x in lines])


def test_fingerprint_follows_settings_and_inputs(tmp_path):
    raw = tmp_path / "raw"
    _multi30k_raw(raw)
    parts = {
        "train": [Part("train")],
        "valid": [Part("val")],
        "test": [Part("test_2016_flickr")],
    }

    def fingerprint(size, **opts):
        opts = Options(dest=tmp_path / "d", raw=raw, **opts)
        return Run(
            "m", opts, "de", "en", parts, {"size": size, "train": list(opts.train)}
        ).fingerprint

    assert fingerprint(100) == fingerprint(100)
    assert fingerprint(100) != fingerprint(200)
    before = fingerprint(100)
    write(
        raw / "val.en",
        (raw / "val.en").read_text().replace("sentence 3", "sentence three"),
    )
    assert fingerprint(100) != before


# ----------------------------------------------------------- binarization

FAKE = """
import sys, pathlib
a = sys.argv[1:]
get = lambda k: a[a.index(k) + 1]
src, tgt, dest = get("--source-lang"), get("--target-lang"), pathlib.Path(get("--destdir"))
(dest / f"dict.{src}.txt").write_text("w 1\\n")
if "{fail}" == "yes":
    print("Traceback: something broke"); sys.exit(3)
(dest / f"dict.{tgt}.txt").write_text("w 1\\n")
for s in ("train", "valid", "test"):
    for l in (src, tgt):
        for e in ("bin", "idx"):
            (dest / f"{s}.{src}-{tgt}.{l}.{e}").write_bytes(b"")
"""


def fake_preprocess(tmp_path: Path, fail: bool):
    script = write(
        tmp_path / f"fake_{fail}.py", FAKE.replace("{fail}", "yes" if fail else "no")
    )
    return [sys.executable, str(script)]


def _binarize(tmp_path, dest, fingerprint, fail=False):
    return bz.binarize(
        tmp_path / "text",
        "de",
        "en",
        dest,
        fingerprint,
        joined=True,
        command=fake_preprocess(tmp_path, fail),
    )


def _leftovers(dest: Path):
    return sorted(p.name for p in dest.parent.glob(f".{dest.name}.*"))


def test_binarize_is_complete_then_idempotent(tmp_path):
    dest = tmp_path / "data-bin" / "x"
    fp = {"settings": 1}
    assert not bz.is_complete(dest, fp, "de", "en")
    _binarize(tmp_path, dest, fp)
    assert bz.is_complete(dest, fp, "de", "en")
    assert bz.read_stamp(dest)["fingerprint"] == fp
    assert not bz.is_complete(dest, {"settings": 2}, "de", "en")  # stale
    (dest / "test.de-en.en.idx").unlink()
    assert not bz.is_complete(dest, fp, "de", "en")  # partial
    (dest / bz.STAMP).unlink()
    write(dest / "test.de-en.en.idx", b"")
    assert not bz.is_complete(dest, fp, "de", "en")  # no stamp: not ours, rebuild
    assert _leftovers(dest) == []


def test_failed_preprocess_leaves_no_data_bin(tmp_path):
    dest = tmp_path / "data-bin" / "x"
    with pytest.raises(RuntimeError, match=r"exit 3.*\n.*something broke"):
        _binarize(tmp_path, dest, {"a": 1}, fail=True)
    assert not dest.exists() and _leftovers(dest) == []


def test_failed_rebuild_keeps_the_previous_output(tmp_path):
    dest = tmp_path / "data-bin" / "x"
    _binarize(tmp_path, dest, {"a": 1})
    with pytest.raises(RuntimeError):
        _binarize(tmp_path, dest, {"a": 2}, fail=True)
    assert bz.is_complete(dest, {"a": 1}, "de", "en")  # old one, still whole
    assert not bz.is_complete(dest, {"a": 2}, "de", "en")
    assert _leftovers(dest) == []


def test_interrupted_run_leaves_no_data_bin(tmp_path, monkeypatch):
    """Ctrl-C while fairseq-preprocess has written half its files."""

    def interrupted(cmd, **kwargs):
        destdir = Path(cmd[cmd.index("--destdir") + 1])
        write(destdir / "dict.de.txt", "w 1\n")
        write(destdir / "train.de-en.de.bin", b"\0" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(bz.subprocess, "run", interrupted)
    dest = tmp_path / "data-bin" / "x"
    with pytest.raises(KeyboardInterrupt):
        _binarize(tmp_path, dest, {"a": 1})
    assert not dest.exists() and _leftovers(dest) == []


def test_leftovers_of_a_killed_run_are_removed(tmp_path):
    dest = tmp_path / "data-bin" / "x"
    dead = 2**22 + 12345  # above Linux's pid_max default: never a live process
    left = write(tmp_path / "data-bin" / f".x.partial-{dead}" / "dict.de.txt", "w 1\n")
    mine = write(tmp_path / "data-bin" / f".x.partial-{os.getppid()}" / "keep", "")
    _binarize(tmp_path, dest, {"a": 1})
    assert not left.parent.exists()
    assert mine.exists()  # a live process's folder is not touched
    assert bz.is_complete(dest, {"a": 1}, "de", "en")
