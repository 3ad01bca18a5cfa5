"""End to end through fairseq's own command-line tools, on a generated corpus:
fairseq-preprocess -> fairseq-train -> resume -> fairseq-generate (BLEU) ->
fairseq-interactive, and the hub's from_pretrained().translate()."""

import re

import pytest

from delight_fairseq.tools.synthetic import write_corpus

from helpers import NO_DROPOUT, TINY_MODEL, TRAIN, USER_DIR, preprocess, run_cli

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


def run(tool, *args, stdin=None):
    return run_cli(tool, *args, stdin=stdin)[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    raw = write_corpus(work / "raw", n_train=1000, n_valid=100, n_test=100, seed=7)
    data = preprocess(raw, work / "bin")
    ckpt = work / "ckpt"
    common = [data, "--user-dir", USER_DIR, *TINY_MODEL, *NO_DROPOUT, *TRAIN]
    first = run("fairseq-train", *common, "--save-dir", ckpt, "--max-update", "120")
    resumed = run("fairseq-train", *common, "--save-dir", ckpt, "--max-update", "160")
    return {"raw": raw, "data": data, "ckpt": ckpt, "first": first, "resumed": resumed}


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


def test_evaluate_sh_scores_with_sacrebleu(trained):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from helpers import REPO

    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "evaluate.sh"),
            trained["data"].name,
            str(trained["ckpt"] / "checkpoint_best.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "DELIGHT_VENV": str(Path(sys.executable).parent.parent),
            "DELIGHT_DATA_BIN": str(trained["data"].parent),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((trained["ckpt"] / "eval" / "bleu.json").read_text())
    assert result["sacrebleu"] > 50 and result["lenpen"] == 1.0
    assert result["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    hyps = (trained["ckpt"] / "eval" / "test.hyp").read_text().splitlines()
    assert len(hyps) == 100
    assert f"sacreBLEU {result['sacrebleu']:.2f}" in proc.stdout
    # fairseq's summary line stays in the results file (the shoot-out reads its speed)
    generated = (trained["ckpt"] / "eval" / "generate-test.txt").read_text()
    assert re.search(r"^Translated 100 sentences .*sentences/s", generated, flags=re.M)


def test_demo_on_the_generated_task(tmp_path):
    """`delight-demo` without Multi30k: a generated task, a fixed number of updates,
    progress with the time left, BLEU through the evaluation code, hub examples."""
    code, out = run_cli(
        "delight-demo",
        "--multi30k",
        tmp_path / "none",
        "--updates",
        "150",
        "--out",
        tmp_path / "demo",
    )
    assert "update 150 / 150" in out and "min left" in out
    bleu = float(re.search(r"^BLEU ([\d.]+)$", out, re.MULTILINE).group(1))
    assert bleu > 20
    assert (tmp_path / "demo" / "checkpoints" / "eval" / "bleu.json").is_file()
    assert "ein mann mag der rot auto" in out and "->" in out
