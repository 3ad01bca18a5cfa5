"""benchmarks/device_check.sh stays ready between GPU loans: its no-GPU path exits 0
and says why, and its training measurement runs (on the CPU, tiny) end to end."""

import json
import subprocess
import sys

import pytest
import torch

from helpers import REPO

pytestmark = pytest.mark.slow


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU path")
def test_device_check_without_a_gpu_says_so_and_succeeds():
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "device_check.sh")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device here" in proc.stderr


def test_device_train_smoke_on_cpu(tmp_path):
    out = tmp_path / "device"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "device_train.py"), "--smoke",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads((out / "results.json").read_text())
    assert "error" not in row, row
    assert row["updates_timed"] == 2 and row["target_tokens_per_s"] > 0
    assert row["last_loss"] is not None and row["last_loss"] > 0
    assert "| delight d_m 128 |" in (out / "results.md").read_text()
