"""tests/gpu: the CUDA path. Every test here skips without a CUDA device.

DELIGHT_GPU_TESTS_ON_CPU=1 runs them on the CPU instead (the fp16 training cases
excepted): that checks the tests themselves on a machine without a GPU, not the
GPU path.
"""

import os

import pytest
import torch


def device_under_test() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("DELIGHT_GPU_TESTS_ON_CPU") == "1":
        return "cpu"
    return ""


@pytest.fixture
def device():
    found = device_under_test()
    if not found:
        pytest.skip(
            "no CUDA device (torch.cuda.is_available() is False); "
            "benchmarks/device_check.sh runs these on a GPU machine"
        )
    if found == "cuda":
        # exact float32 matmuls: the comparisons below are against float64
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return found
