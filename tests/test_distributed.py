"""Two CPU workers on fairseq's engine (gloo) take the same step as one worker."""

import multiprocessing
import subprocess

import pytest
import torch

from delight_fairseq.tools.synthetic import write_corpus

from helpers import BIN, NO_DROPOUT, REPO, TINY_MODEL, USER_DIR, preprocess, run_cli

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow

N_SENTENCES = 16
# plain SGD, so that the update is the averaged gradient itself
STEP = (
    "--criterion delight_label_smoothed_cross_entropy --label-smoothing 0.1 "
    "--optimizer sgd --lr 0.5 --momentum 0 --lr-scheduler fixed --max-update 1 "
    "--max-tokens 100000 --required-batch-size-multiple 1 --no-epoch-checkpoints "
    "--seed 1 --num-workers 0 --disable-validation --log-format simple"
).split()


def weights(path):
    return torch.load(path, weights_only=False)["model"]


def train_one_worker(common, batch_size, save_dir):
    run_cli(
        "fairseq-train",
        *common,
        "--user-dir",
        USER_DIR,
        "--cpu",
        "--batch-size",
        batch_size,
        "--save-dir",
        save_dir,
    )
    return weights(save_dir / "checkpoint_last.pt")


# the two workers also with activation checkpointing: DDP's step is unchanged by it
@pytest.mark.parametrize("two_extra", [[], ["--checkpoint-activations"]])
def test_two_workers_with_half_the_batch_equal_one_worker(tmp_path, two_extra):
    raw = write_corpus(tmp_path / "raw", N_SENTENCES, 4, 0, seed=5)
    data = preprocess(raw, tmp_path / "bin")
    common = [data, *TINY_MODEL, *NO_DROPOUT, *STEP]
    # one worker, the whole data set in one batch
    whole = train_one_worker(common, N_SENTENCES, tmp_path / "one")
    # two workers, half of it each, through the project's launcher
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "train_distributed.sh"),
            "cpu",
            "2",
            *map(str, common),
            "--batch-size",
            str(N_SENTENCES // 2),
            "--save-dir",
            str(tmp_path / "two"),
            *two_extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "distributed init (rank 1)" in log
    if two_extra:
        assert "activation checkpointing per block" in log
    two = weights(tmp_path / "two" / "checkpoint_last.pt")
    assert whole.keys() == two.keys()
    for name in whole:
        torch.testing.assert_close(two[name], whole[name], rtol=1e-5, atol=1e-6)
    # and the step really combined both halves: one half alone lands elsewhere
    half = train_one_worker(common, N_SENTENCES // 2, tmp_path / "half")
    assert any(not torch.allclose(half[n], two[n], atol=1e-5) for n in two)


def _build_in_child(queue):
    import delight_fairseq  # noqa: F401

    from helpers import build, n_params

    queue.put(n_params(build("delight", src_vocab=30)))


def test_plugin_imports_in_spawned_workers():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_build_in_child, args=(queue,))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert queue.get(timeout=5) > 0
