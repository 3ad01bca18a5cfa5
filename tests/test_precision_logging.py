"""Mixed precision through fairseq's own optimizers, and the logging a user expects."""

import json
import math
import re

import pytest

from delight_fairseq.tools.synthetic import write_corpus

from helpers import (
    NO_DROPOUT,
    TINY_MODEL,
    TRAIN,
    USER_DIR,
    hydra_train_tiny,
    preprocess,
    run_cli,
)

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    work = tmp_path_factory.mktemp("precision")
    return preprocess(write_corpus(work / "raw", 500, 40, 0, seed=21), work / "bin")


def train(data, save_dir, *extra, updates=40):
    return run_cli(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *NO_DROPOUT,
        *TRAIN,
        "--save-dir",
        save_dir,
        "--max-update",
        updates,
        "--log-interval",
        "5",
        *extra,
    )[1]


def losses(log):
    return [float(x) for x in re.findall(r"train_inner.*?\bloss=([\d.a-z]+),", log)]


def test_bf16_trains_on_cpu_without_nan(data, tmp_path):
    """fairseq-train ties --bf16 to TPUs (it sets --tpu); Hydra's common.bf16 with
    common.cpu trains the bfloat16 model on the CPU with fp32 master weights."""
    code, log = hydra_train_tiny(
        data, tmp_path / "bf16", "common.bf16=true", "common.log_interval=5",
        "common.log_format=simple", "optimization.max_update=40", "optimization.lr=[0.005]",
        "lr_scheduler.warmup_updates=10", "dataset.max_tokens=1500",
    )  # fmt: skip
    assert "'bf16': True" in log and "'tpu': False" in log
    values = losses(log)
    assert len(values) == 8 and all(math.isfinite(v) for v in values)
    assert values[-1] < 0.8 * values[0]


def test_fp16_loss_scaling_is_fairseq_own(data, tmp_path):
    """--fp16 runs fairseq's FP16Optimizer with its dynamic loss scaler: the GPU's
    code path. On the CPU it needs --fp16-no-flatten-grads (the flat fp32 copy is
    allocated on CUDA) and is slow; speed and overflow handling are the GPU's."""
    log = train(
        data,
        tmp_path / "fp16",
        "--fp16",
        "--fp16-no-flatten-grads",
        "--fp16-init-scale",
        "128",
        "--log-interval",
        "4",
        updates=8,
    )
    values = losses(log)
    assert len(values) == 2 and all(math.isfinite(v) for v in values)
    assert re.search(r"loss_scale=128\b", log)


def test_tensorboard_and_progress_bar(data, tmp_path):
    board = tmp_path / "tb"
    log = train(data, tmp_path / "tb_ckpt", "--tensorboard-logdir", board, updates=10)
    events = list((board / "train_inner").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0, log[-2000:]
    # fairseq's json progress bar: one parsable record per log interval
    log = run_cli(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *TRAIN,
        "--save-dir",
        tmp_path / "json",
        "--max-update",
        "4",
        "--log-format",
        "json",
        "--log-interval",
        "2",
    )[1]
    records = [
        json.loads(line[line.index("{") :])
        for line in log.splitlines()
        if "| train_inner |" in line
    ]
    assert [r["num_updates"] for r in records] == ["2", "4"]
    assert all("accuracy" in r and "loss" in r for r in records)
