"""benchmarks/device_check.sh stays ready between GPU loans: its no-GPU path exits 0
and says why, its training measurement runs (on the CPU, tiny) end to end, and it
reads each update's peak GPU memory before fairseq's Trainer resets it."""

import json
import subprocess
import sys

import pytest
import torch

from helpers import REPO, load_benchmark

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


def test_device_train_keeps_each_updates_peak_before_fairseq_resets_it(monkeypatch):
    import inspect

    from fairseq.trainer import Trainer

    # the reason: on CUDA, every train_step ends by resetting the peak statistics
    # (for its gb_free metric), when the update's activations are already freed
    assert "torch.cuda.reset_peak_memory_stats()" in inspect.getsource(
        Trainer.train_step
    )
    device_train = load_benchmark("device_train")
    allocator = {"peak": 0}

    def reset():
        allocator["peak"] = 0

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: allocator["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    peaks = []
    with device_train.keeping_peaks(peaks, cuda=True):
        for update_peak in (5, 9, 3):
            allocator["peak"] = update_peak  # the update's forward and backward
            torch.cuda.reset_peak_memory_stats()  # fairseq, at the update's end
            assert allocator["peak"] == 0
    assert peaks == [5, 9, 3]
    assert torch.cuda.reset_peak_memory_stats is reset  # put back afterwards
    with device_train.keeping_peaks(peaks, cuda=False):
        assert torch.cuda.reset_peak_memory_stats is reset
