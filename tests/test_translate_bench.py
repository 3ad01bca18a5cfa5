"""benchmarks/translate.py end to end on a few sentences: every engine runs in its own
process, DeLighT's engines (torch and NumPy) give fairseq's hypotheses, the CTranslate2 conversion of
the transformer gives (nearly) fairseq's, and a missing checkpoint names its flag.
Needs the Multi30k data-bin and trained checkpoints under benchmarks/out (made by
the benchmarks, not by the tests) and ctranslate2 (the bench extra); skips without."""

import importlib.util
import json
import subprocess
import sys

import pytest

from helpers import REPO

pytestmark = pytest.mark.slow

SCRIPT = REPO / "benchmarks" / "translate.py"
OUT = REPO / "benchmarks" / "out"
DATA_BIN = OUT / "multi30k_cpu" / "data-bin" / "multi30k_de_en"
SENTENCES = 10


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def first(pattern: str):
    found = sorted(OUT.glob(pattern))
    return found[0] if found else None


def test_a_missing_checkpoint_names_its_flag(tmp_path):
    for name in ("spm.model", "dict.de.txt"):
        (tmp_path / name).write_text("")
    proc = run("--engines", "delight-engine", "--data", tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "--delight: no checkpoint given" in proc.stderr


def test_smoke_every_engine(tmp_path):
    if importlib.util.find_spec("ctranslate2") is None:
        pytest.skip("ctranslate2 is not installed (pip install -e '.[bench]')")
    delight = first("**/delight_d*/seed*/checkpoint_best.pt")
    transformer = first("**/transformer_256*/**/checkpoint_best.pt")
    if not (DATA_BIN / "spm.model").is_file() or delight is None or transformer is None:
        pytest.skip(
            "needs the Multi30k data-bin and DeLighT and transformer checkpoints under "
            f"{OUT} (benchmarks/curves.py or shootout.py make them)"
        )
    out = tmp_path / "out"
    proc = run("--delight", delight, "--transformer", transformer, "--threads", 1,
               "--beams", 1, "--sentences", SENTENCES, "--out", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["cpu"] and results["cpu"] in (out / "table.md").read_text()
    runs = {r["engine"]: r for r in results["runs"]}
    assert set(runs) | set(results["skipped"]) == {
        "delight-fairseq", "delight-engine", "delight-engine-torch",
        "delight-engine-int8", "delight-lite", "transformer-fairseq",
        "transformer-ct2", "transformer-ct2-int8",
    }  # fmt: skip
    for r in runs.values():
        assert r["sentences_per_s"] > 0 and r["peak_rss_mib"] > 0 and "bleu" in r
    hyps = {e: (out / "hyps" / f"{e}_t1_b1.en").read_text().splitlines() for e in runs}
    assert hyps["delight-engine"] == hyps["delight-fairseq"]
    assert hyps["delight-engine-torch"] == hyps["delight-fairseq"]
    assert hyps["delight-lite"] == hyps["delight-fairseq"]
    same = sum(
        a == b for a, b in zip(hyps["transformer-ct2"], hyps["transformer-fairseq"])
    )
    assert same >= SENTENCES - 2, (hyps["transformer-ct2"], hyps["transformer-fairseq"])
    # each process's own peak: the CTranslate2 and delight-lite ones never load torch
    for engine in ("transformer-ct2", "delight-lite"):
        assert runs[engine]["peak_rss_mib"] < runs["delight-fairseq"]["peak_rss_mib"]
    assert "| transformer-ct2-int8 | 1 | 1 |" in (out / "table.md").read_text()
    assert (out / "translate.png").stat().st_size > 0
    # 2 threads on 2 batches at once: the same hypotheses as one engine
    par = tmp_path / "workers"
    proc = run("--delight", delight, "--transformer", transformer, "--threads", 2,
               "--beams", 1, "--sentences", SENTENCES, "--out", par, "--engines",
               "delight-engine-workers", "delight-lite-workers",
               "transformer-ct2-int8-workers")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for engine in ("delight-engine-workers", "delight-lite-workers"):
        workers = (par / "hyps" / f"{engine}_t2_b1.en").read_text()
        assert workers.splitlines() == hyps["delight-fairseq"]
    assert (par / "hyps" / "transformer-ct2-int8-workers_t2_b1.en").is_file()
