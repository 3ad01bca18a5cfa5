"""Checkpoint averaging, the compound-split scorer and the reproduce driver."""

import json
import subprocess
import sys

import pytest
import torch

from delight_fairseq.catalog import get
from delight_fairseq.tools.averaging import average_checkpoints, last_checkpoints
from delight_fairseq.tools.reproduce import table
from delight_fairseq.tools.scoring import compound_split, extract, tokenized_bleu


def fake_checkpoint(path, seed, extra=None):
    g = torch.Generator().manual_seed(seed)
    model = {
        "w": torch.randn(3, 4, generator=g),
        "b": torch.randn(4, generator=g),
        "steps": torch.tensor([seed]),
        "half": torch.randn(5, generator=g).half(),
    }
    torch.save({"model": model, "cfg": {"seed": seed}, **(extra or {})}, path)
    return model


def test_average_is_the_elementwise_mean(tmp_path):
    models = [fake_checkpoint(tmp_path / f"checkpoint{i}.pt", i) for i in range(1, 4)]
    state = average_checkpoints([tmp_path / f"checkpoint{i}.pt" for i in range(1, 4)])
    for name in ("w", "b"):
        torch.testing.assert_close(
            state["model"][name], sum(m[name] for m in models) / 3
        )
    want = (sum(m["half"].double() for m in models) / 3).half()
    assert state["model"]["half"].dtype == torch.float16
    torch.testing.assert_close(state["model"]["half"], want)
    # everything else is the last checkpoint's
    assert state["cfg"] == {"seed": 3} and state["model"]["steps"].tolist() == [3]


def test_last_checkpoints_and_cli(tmp_path):
    models = {
        i: fake_checkpoint(tmp_path / f"checkpoint{i}.pt", i) for i in (1, 2, 10, 11)
    }
    fake_checkpoint(tmp_path / "checkpoint_best.pt", 99)
    assert [p.name for p in last_checkpoints(tmp_path, 3)] == [
        "checkpoint2.pt",
        "checkpoint10.pt",
        "checkpoint11.pt",
    ]
    assert [p.name for p in last_checkpoints(tmp_path, 2, upper_bound=10)] == [
        "checkpoint2.pt",
        "checkpoint10.pt",
    ]
    with pytest.raises(ValueError, match="found 4 epoch checkpoints"):
        last_checkpoints(tmp_path, 5)
    out = tmp_path / "avg.pt"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "delight_fairseq.tools.averaging",
            "--inputs",
            str(tmp_path),
            "--num-epoch-checkpoints",
            "2",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    avg = torch.load(out, weights_only=False)["model"]
    torch.testing.assert_close(avg["w"], (models[10]["w"] + models[11]["w"]) / 2)


def test_compound_split_known_example():
    # the convention of fairseq's compound_split_bleu.sh (and of the transformer papers)
    # matches do not overlap: in "3-4-5" the 4 is taken by the first one
    assert compound_split(
        "die Jaguar-Schamanen und Nord-Süd-Achse , 3-4-5 mal - so"
    ) == (
        "die Jaguar ##AT##-##AT## Schamanen und Nord ##AT##-##AT## Süd ##AT##-##AT## Achse , "
        "3 ##AT##-##AT## 4-5 mal - so"
    )


def test_tokenized_bleu_counts_split_compounds():
    refs = ["ein Jaguar-Schamane tanzt"]
    plain = tokenized_bleu(["ein Jaguar Schamane tanzt"], refs).score
    split = tokenized_bleu(
        [compound_split("ein Jaguar-Schamane tanzt")], [compound_split(r) for r in refs]
    ).score
    assert split == pytest.approx(100.0) and plain < 50


def test_extract_orders_by_sentence_id():
    log = [
        "S-1\tb\n",
        "T-1\tB\n",
        "H-1\t-0.1\tb1\n",
        "D-1\t-0.1\tB1\n",
        "S-0\ta\n",
        "T-0\tA\n",
        "H-0\t-0.2\ta0\n",
        "D-0\t-0.2\tA0\n",
        "other line\n",
    ]
    assert extract(log) == (["A0", "B1"], ["A", "B"])
    assert extract(log, detokenized=False) == (["a0", "b1"], ["A", "B"])
    with pytest.raises(ValueError, match="no hypotheses"):
        extract(["nothing here\n"])


@pytest.mark.slow
def test_reproduce_dry_run_matches_the_spec(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "delight_fairseq.tools.reproduce",
            "wmt14_en_de",
            "--dry-run",
            "--data-bin",
            str(tmp_path / "none"),
            "--markdown",
            str(tmp_path / "t.md"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| 1")
        or line.startswith("| 2")
        or line.startswith("| 3")
        or line.startswith("| 5")
        or line.startswith("| 6")
    ]
    assert [r.split(" | ")[1:3] for r in rows] == [
        ["8.09 M", "8.09 M"],
        ["13.79 M", "13.79 M"],
        ["23.25 M", "23.25 M"],
        ["36.76 M", "36.76 M"],
        ["54.04 M", "54.04 M"],
    ]
    assert (tmp_path / "t.md").read_text().strip() == out.strip()


def test_reproduce_uses_the_real_dictionary_and_measured_bleu(tmp_path):
    from fairseq.data import Dictionary

    data = tmp_path / "data-bin" / "wmt16_en_ro"
    data.mkdir(parents=True)
    d = Dictionary()
    for i in range(996):
        d.add_symbol(f"w{i}")
    for lang in ("en", "ro"):
        d.save(str(data / f"dict.{lang}.txt"))
    ckpt = tmp_path / "ckpt" / "wmt16_en_ro_d256" / "eval"
    ckpt.mkdir(parents=True)
    (ckpt / "bleu.json").write_text(json.dumps({"sacrebleu": 12.345}))
    lines = table("wmt16_en_ro", tmp_path / "data-bin", tmp_path / "ckpt")
    assert "(1,000 / 1,000 types)" in lines[2]
    row = next(line for line in lines if line.startswith("| 256 "))
    # non-vocab 8,190,376 + 128 x 1,000 shared
    cells = [cell.strip(" |") for cell in row.split(" | ")]
    assert cells == ["256", "8.32 M", "12.67 M", "12.35 (sacreBLEU)", "33.8"]
    assert len(
        [line for line in lines if line.startswith("| ") and "M |" in line]
    ) == len(get("wmt16_en_ro").rows)
