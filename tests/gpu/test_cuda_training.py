"""Mixed-precision training on CUDA through fairseq's own code paths: --fp16
(FP16Optimizer: fp16 model, flattened fp32 master gradients, dynamic loss
scaling), --amp (autocast with a grad scaler) and bf16 (Hydra's common.bf16;
fairseq-train's --bf16 means TPUs). Finite losses that fall, and no overflow
storm at the default initialisation."""

import math
import re

import pytest

from delight_fairseq.tools.synthetic import write_corpus

from helpers import TINY_MODEL, TRAIN, USER_DIR, hydra_train_tiny, preprocess, run_cli

UPDATES = 60


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    work = tmp_path_factory.mktemp("cuda_training")
    return preprocess(write_corpus(work / "raw", 800, 40, 0, seed=5), work / "bin")


def losses(log):
    return [float(x) for x in re.findall(r"train_inner.*?\bloss=([\d.a-z]+),", log)]


def overflows(log) -> int:
    return len(re.findall(r"gradient overflow detected", log))


def check_training(log, values):
    assert len(values) >= 5 and all(math.isfinite(v) for v in values), log[-3000:]
    assert values[-1] < 0.8 * values[0], values
    # the scaler may halve a few times while it finds its level, not every step
    assert overflows(log) <= 6, log[-3000:]


@pytest.mark.parametrize("precision", [["--fp16"], ["--amp"]])
def test_fairseq_train_mixed_precision_on_cuda(device, data, tmp_path, precision):
    if device != "cuda":
        pytest.skip("fp16 and AMP training are the GPU's code paths")
    train = [a for a in TRAIN if a != "--cpu"]
    code, log = run_cli(
        "fairseq-train", data, "--user-dir", USER_DIR, *TINY_MODEL, *train,
        *precision, "--save-dir", tmp_path / "ckpt", "--max-update", UPDATES,
        "--log-interval", "10",
    )  # fmt: skip
    assert code == 0 and "CUDA enviroments for all 1 workers" in log  # (fairseq's typo)
    check_training(log, losses(log))


def test_bf16_training_on_cuda(device, data, tmp_path):
    code, log = hydra_train_tiny(
        data, tmp_path / "bf16", "common.bf16=true", "common.log_interval=10",
        "common.log_format=simple", f"optimization.max_update={UPDATES}",
        "optimization.lr=[0.005]", "lr_scheduler.warmup_updates=10",
        "dataset.max_tokens=1500", cpu=device == "cpu",
    )  # fmt: skip
    assert code == 0 and "'bf16': True" in log
    check_training(log, losses(log))
