"""What the tests of delight-translate share: tiny DeLighTs trained in-process on
the synthetic task (tools/synthetic.py) and saved as fairseq checkpoints with their
dictionaries, and the eager GLT ops for the translators they build."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fairseq.data import Dictionary

from delight_fairseq.tools.synthetic import sentence_pair

from helpers import NO_DROPOUT, REPO, TINY_MODEL, USER_DIR, train_on_pairs

MAX_SOURCE_POSITIONS = 32  # small, so that an over-long line is easy to write


@pytest.fixture(scope="module", autouse=True)
def eager_glt():
    """The eager GLT ops, here and in the processes the tests start: a process
    that finds the fused kernel's build cache stale spends about 20 s compiling
    it (tests/test_fused.py and tests/test_engine.py cover the kernel)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELIGHT_FUSED_GLT", "0")
        yield


def synthetic_pairs(n, seed):
    rng = random.Random(seed)
    return [sentence_pair(rng) for _ in range(n)]


def save_checkpoint(folder: Path, pairs, steps: int, name="checkpoint_best.pt"):
    """Train a tiny DeLighT in-process on ``pairs`` (space-separated symbols)
    and save it as fairseq does, with its dictionaries in ``folder/bin``
    (recorded in the checkpoint as its data). Returns (checkpoint, data-bin)."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    d = Dictionary()
    for s, t in pairs:
        for w in f"{s} {t}".split():
            d.add_symbol(w)
    d.finalize()
    data = folder / "bin"
    data.mkdir(parents=True, exist_ok=True)
    d.save(str(data / "dict.src.txt"))
    d.save(str(data / "dict.tgt.txt"))
    args = options.parse_args_and_arch(
        options.get_training_parser(),
        [str(data), "--user-dir", USER_DIR, "--task", "translation", "-s", "src",
         "-t", "tgt", *TINY_MODEL, *NO_DROPOUT,
         "--max-source-positions", str(MAX_SOURCE_POSITIONS),
         "--max-target-positions", "64"],
    )  # fmt: skip
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    torch.manual_seed(0)
    model = task.build_model(cfg.model)
    train_on_pairs(model, d, pairs, steps, batch_size=64)
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "args": None,
        "model": model.state_dict(),
        "optimizer_history": [
            {
                "criterion_name": "label_smoothed_cross_entropy",
                "optimizer_name": "Adam",
                "lr_scheduler_state": {"best": None},
                "num_updates": steps,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1}},
    }
    ckpt = folder / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    torch.save(state, ckpt / name)
    return ckpt / name, data


def run_python(*argv, stdin=b""):
    """``python ARGV...`` in the repository with one OpenMP thread (and
    DELIGHT_FUSED_GLT=0 under eager_glt): (exit status, stdout bytes,
    stderr text)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, *map(str, argv)],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace")
