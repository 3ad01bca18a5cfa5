"""End to end through fairseq's own command-line tools, on a generated corpus:
fairseq-preprocess -> fairseq-train -> resume -> fairseq-generate (BLEU) ->
fairseq-interactive, and the hub's from_pretrained().translate()."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from delight_fairseq.synthetic import write_corpus

from conftest import REPO

BIN = Path(sys.executable).parent
USER_DIR = str(REPO / "delight_fairseq")
MODEL_ARGS = [
    "--arch",
    "delight",
    "--delight-emb-out-dim",
    "64",
    "--delight-enc-layers",
    "2",
    "--delight-dec-layers",
    "2",
    "--delight-enc-min-depth",
    "2",
    "--delight-enc-max-depth",
    "3",
    "--delight-dec-min-depth",
    "2",
    "--delight-dec-max-depth",
    "3",
    "--share-all-embeddings",
    "--dropout",
    "0",
    "--attention-dropout",
    "0",
    "--delight-dropout",
    "0",
    "--delight-emb-dropout",
    "0",
    "--pe-dropout",
    "0",
    "--ffn-dropout",
    "0",
]
TRAIN_ARGS = [
    "--criterion",
    "delight_label_smoothed_cross_entropy",
    "--label-smoothing",
    "0.1",
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9, 0.98)",
    "--lr",
    "0.005",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "30",
    "--max-tokens",
    "1500",
    "--cpu",
    "--no-epoch-checkpoints",
    "--seed",
    "1",
    "--log-format",
    "simple",
    "--log-interval",
    "20",
    "--num-workers",
    "0",
]


def run(tool, *args, stdin=None):
    proc = subprocess.run(
        [str(BIN / tool), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode:
        raise AssertionError(
            f"{tool} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    raw = write_corpus(work / "raw", n_train=1000, n_valid=100, n_test=100, seed=7)
    data = work / "bin"
    run(
        "fairseq-preprocess",
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--trainpref",
        raw / "train",
        "--validpref",
        raw / "valid",
        "--testpref",
        raw / "test",
        "--destdir",
        data,
        "--joined-dictionary",
        "--workers",
        "1",
    )
    ckpt = work / "ckpt"
    first = run(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *MODEL_ARGS,
        *TRAIN_ARGS,
        "--save-dir",
        ckpt,
        "--max-update",
        "120",
    )
    resumed = run(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *MODEL_ARGS,
        *TRAIN_ARGS,
        "--save-dir",
        ckpt,
        "--max-update",
        "160",
    )
    return {
        "work": work,
        "raw": raw,
        "data": data,
        "ckpt": ckpt,
        "first": first,
        "resumed": resumed,
    }


def test_training_logs_the_model_and_learns(trained):
    log = trained["first"]
    assert "DeLighT: d_m=64, encoder 2 blocks" in log
    assert "accuracy" in log
    losses = [float(x) for x in re.findall(r"train_inner \| .*? loss=([\d.]+)", log)]
    assert losses[-1] < 0.6 * losses[0]


def test_resume_continues_from_the_last_checkpoint(trained):
    log = trained["resumed"]
    assert re.search(
        r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 120 updates\)", log
    )
    assert "num_updates=160" in log or "num_updates 160" in log


def test_generate_scores_the_whole_test_set(trained):
    out = run(
        "fairseq-generate",
        trained["data"],
        "--user-dir",
        USER_DIR,
        "--path",
        trained["ckpt"] / "checkpoint_best.pt",
        "--beam",
        "5",
        "--cpu",
        "--batch-size",
        "50",
        "--scoring",
        "sacrebleu",
    )
    assert len(re.findall(r"^H-\d+", out, flags=re.M)) == 100
    bleu = float(re.search(r"BLEU = ([\d.]+)", out).group(1))
    assert bleu > 50, out[-2000:]


def test_interactive_translates(trained):
    out = run(
        "fairseq-interactive",
        trained["data"],
        "--user-dir",
        USER_DIR,
        "--path",
        trained["ckpt"] / "checkpoint_best.pt",
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--cpu",
        "--beam",
        "5",
        stdin="ein mann mag der auto\nder alt hund hat ein ball\n",
    )
    hyps = re.findall(r"^H-\d+\t\S+\t(.*)$", out, flags=re.M)
    assert hyps == ["a man likes the car", "the dog old has a ball"]


def test_hub_from_pretrained_translates(trained):
    from delight_fairseq import DeLighTTransformerModel

    hub = DeLighTTransformerModel.from_pretrained(
        str(trained["ckpt"]),
        checkpoint_file="checkpoint_best.pt",
        data_name_or_path=str(trained["data"]),
    )
    assert hub.translate("ein mann mag der auto", beam=5) == "a man likes the car"
