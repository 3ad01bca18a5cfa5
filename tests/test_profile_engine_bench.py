"""benchmarks/profile_engine.py's comparison and output-projection modes on a few
sentences: every variant decodes, and the float32 variants give the engine's
hypotheses. Needs the Multi30k data-bin and a trained DeLighT checkpoint under
benchmarks/out (made by the benchmarks, not by the tests); skips without."""

import re
import subprocess
import sys

import pytest

from helpers import REPO, load_benchmark

pytestmark = pytest.mark.slow

SCRIPT = REPO / "benchmarks" / "profile_engine.py"
OUT = REPO / "benchmarks" / "out"
DATA_BIN = OUT / "multi30k_cpu" / "data-bin" / "multi30k_de_en"


def checkpoint():
    found = sorted(OUT.glob("curves/**/delight_d*/seed*/checkpoint_last.pt"))
    usable = [p for p in found if "spm" not in str(p)]  # the recipe's vocabulary
    if not (DATA_BIN / "spm.model").is_file() or not usable:
        pytest.skip(f"needs the Multi30k data-bin and a DeLighT checkpoint under {OUT}")
    return usable[0]


def run(*args):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--delight", str(checkpoint()), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_compare_runs_every_variant_and_float32_keeps_the_hypotheses():
    out = run("--compare", "--sentences", "20", "--rounds", "1")
    rows = dict(re.findall(r"^\s*(.+?):\s+[\d.]+ sentences/s\s+(\d+)/20", out, re.M))
    assert set(rows) == set(load_benchmark("profile_engine").VARIANTS)
    same = (
        "engine",
        "Python blocks",
        "torch candidates",
        "general loop",
        "fresh log-probs",
    )
    for variant in same:
        assert rows[variant] == "20"
    assert rows["int8, Python blocks"] == rows["int8"]  # the same floats


def test_compare_with_workers_and_chosen_variants():
    """--workers 2: each variant as two engines on batches side by side;
    --variants: those only, with the engine."""
    out = run(
        "--compare", "--sentences", "20", "--rounds", "1", "--workers", "2",
        "--variants", "Python blocks",
    )  # fmt: skip
    assert "2 engines of one thread" in out
    rows = dict(re.findall(r"^\s*(.+?):\s+[\d.]+ sentences/s\s+(\d+)/20", out, re.M))
    assert rows == {"engine": "20", "Python blocks": "20"}


def test_matmul_times_every_kernel():
    out = run("--matmul")
    for name in ("float32 mm", "bfloat16 mm", "int8 fbgemm", "int8 oneDNN"):
        assert re.search(rf"{name}:\s+[\d.]+ ms", out), out


def test_compiled_step_keeps_the_hypotheses():
    """--compiled: the decoder step through torch.compile decodes, and gives
    the eager step's hypotheses."""
    out = run("--compiled", "--sentences", "5", "--rounds", "1", "--beam", "1")
    rows = dict(re.findall(r"^\s*(.+?):\s+[\d.]+ sentences/s\s+(\d+)/5", out, re.M))
    assert rows == {"engine": "5", "eager step": "5", "compiled step": "5"}
