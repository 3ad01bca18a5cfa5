"""Stopping and resuming from checkpoint_last.pt continues the same run exactly."""

import re

import pytest
import torch

from delight_fairseq.tools.synthetic import write_corpus

from helpers import TINY_MODEL, TRAIN, USER_DIR, preprocess, run_cli

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow

# dropout on everywhere, so the resumed run must also restore the random state
DROPOUT = (
    "--dropout 0.1 --attention-dropout 0.1 --delight-dropout 0.1 --delight-emb-dropout 0.1 "
    "--pe-dropout 0.1 --ffn-dropout 0.1"
).split()


def per_update_losses(log):
    """{update: loss} from fairseq's per-update train_inner lines."""
    found = re.findall(r"train_inner \| .*?\bloss=([\d.]+),.*?num_updates=(\d+)", log)
    return {int(n): loss for loss, n in found}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("resume")
    data = preprocess(write_corpus(work / "raw", 400, 40, 0, seed=3), work / "bin")
    # 400 sentences in batches of 400 tokens: several updates per epoch, so the
    # interruption falls in the middle of an epoch
    args = [data, "--user-dir", USER_DIR, *TINY_MODEL, *DROPOUT, *TRAIN]
    args += ["--max-tokens", "400", "--log-interval", "1"]
    _, straight = run_cli(
        "fairseq-train", *args, "--save-dir", work / "a", "--max-update", 14
    )
    _, part1 = run_cli(
        "fairseq-train", *args, "--save-dir", work / "b", "--max-update", 7
    )
    _, part2 = run_cli(
        "fairseq-train", *args, "--save-dir", work / "b", "--max-update", 14
    )
    return work, straight, part1, part2


def test_resume_starts_mid_epoch(runs):
    _, _, part1, part2 = runs
    assert re.search(r"epoch 001: +7 / (\d+)", part1).group(1) != "7"
    assert re.search(
        r"Loaded checkpoint .*checkpoint_last\.pt \(epoch 1 @ 7 updates\)", part2
    )


def test_resumed_losses_equal_the_uninterrupted_run(runs):
    _, straight, part1, part2 = runs
    full = per_update_losses(straight)
    assert sorted(full) == list(range(1, 15))
    assert per_update_losses(part1) == {n: full[n] for n in range(1, 8)}
    assert per_update_losses(part2) == {n: full[n] for n in range(8, 15)}


def test_resumed_weights_are_bit_exact(runs):
    work = runs[0]
    a = torch.load(work / "a" / "checkpoint_last.pt", weights_only=False)
    b = torch.load(work / "b" / "checkpoint_last.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    # and the optimizer state continued too
    sa, sb = a["last_optimizer_state"]["state"], b["last_optimizer_state"]["state"]
    for key in sa:
        assert torch.equal(sa[key]["exp_avg"], sb[key]["exp_avg"])
