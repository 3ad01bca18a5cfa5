"""Multi30k, whole, through the ``delight-prep`` console command."""

import os
import subprocess
from pathlib import Path

import pytest
from fairseq.data import data_utils

from delight_fairseq.tools.prep.binarize import read_stamp

from helpers import BIN

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


def test_delight_prep_multi30k(shared_data, tmp_path):
    dest = tmp_path / "data-bin" / "multi30k_de_en"
    cmd = [str(BIN / "delight-prep"), "multi30k_de_en"]
    cmd += ["--raw", str(shared_data / "multi30k")]
    cmd += ["--dest", str(dest), "--subwords", "2000", "--workers", "2"]
    env = dict(os.environ)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "multi30k_de_en ready" in out.stderr

    sizes = {"train": 29_000, "valid": 1_014, "test": 1_000}
    assert read_stamp(dest)["report"]["pairs"] == sizes
    for split, n in sizes.items():
        for lang in ("de", "en"):
            ds = data_utils.load_indexed_dataset(
                str(dest / f"{split}.de-en.{lang}"), None
            )
            assert len(ds) == n
    # raw text, nothing removed: the pieces decode back to the original lines
    text = Path(f"{dest}.work") / "text"
    raw_test = (shared_data / "multi30k" / "test_2016_flickr.en").read_text(
        encoding="utf-8"
    )
    assert (text / "pre" / "test.en").read_text(encoding="utf-8") == raw_test
    pieces = (text / "test.en").read_text(encoding="utf-8").splitlines()
    assert all(p.startswith("▁") for p in pieces)
    # one joined dictionary (--share-all-embeddings), the model alongside
    assert (dest / "dict.de.txt").read_text() == (dest / "dict.en.txt").read_text()
    assert (dest / "spm.model").is_file()
    assert not list(dest.parent.glob(".multi30k_de_en.*"))

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "already up to date" in again.stderr
