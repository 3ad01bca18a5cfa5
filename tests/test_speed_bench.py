"""benchmarks/speed.py --repeats: the rows of one configuration from separate
processes merge into their medians, the text fields stay as they were, and a
count below 1 is refused naming the flag."""

import subprocess
import sys

import pytest

from helpers import REPO, load_benchmark

SCRIPT = REPO / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed")


def row(tokens_per_s, peak):
    return {
        "model": "delight d_m 128, trim",
        "params": 1_910_472,
        "target_tokens_per_s": tokens_per_s,
        "peak_rss_mib": peak,
    }


def test_repeated_rows_merge_into_their_medians(speed):
    merged = speed.median_row(
        [row(3_600.0, 810.0), row(3_100.0, 790.5), row(4_000.0, 801.0)]
    )
    assert merged == {
        "model": "delight d_m 128, trim",
        "params": 1_910_472,
        "target_tokens_per_s": 3_600.0,
        "peak_rss_mib": 801.0,
        "runs": 3,
    }


def test_one_run_is_its_own_row(speed):
    assert speed.median_row([row(3_600.0, 810.0)]) == {**row(3_600.0, 810.0), "runs": 1}


def test_repeats_is_a_flag_of_one_or_more():
    def speed_py(*args):
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True
        )

    assert "--repeats" in speed_py("--help").stdout
    refused = speed_py("train", "--repeats", "0")
    assert refused.returncode == 2 and "--repeats is 0" in refused.stderr
