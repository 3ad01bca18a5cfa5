"""The recipes of the catalog: LR arithmetic, the CLI and YAML paths agreeing,
every record complete, and fairseq-hydra-train running a config from configs/."""

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from delight_fairseq.catalog import BENCHMARKS, get
from delight_fairseq.config import config_from
from delight_fairseq.tools import training
from delight_fairseq.tools.prep import datasets
from delight_fairseq.tools.synthetic import write_corpus
from delight_fairseq.tools.training import hydra_config, train_args, update_freq
from delight_fairseq.validation import resolve

from helpers import REPO, hydra_train_tiny, preprocess, train_namespace

# the paper's peak LRs (README.md, "Reproducing the paper's tables")
PEAK_LR = {
    "wmt14_en_de": {128: 0.01, 256: 0.007, 384: 0.005, 512: 0.004, 640: 0.003},
    "wmt14_en_fr": {128: 0.01, 256: 0.007, 384: 0.005, 512: 0.004, 640: 0.003},
    "wmt16_en_ro": {128: 0.0028, 256: 0.0014, 384: 0.0009, 640: 0.0006},
}
ALL_ROWS = [(b.name, r.d_m) for b in BENCHMARKS.values() for r in b.rows]


@pytest.mark.parametrize("name, d_m", [(n, d) for n in PEAK_LR for d in PEAK_LR[n]])
def test_peak_lr(name, d_m):
    assert get(name).schedule.peak_lr(d_m) == PEAK_LR[name][d_m]


@pytest.mark.parametrize(
    "name, gpus, freq",
    [
        ("wmt14_en_de", 8, 16),
        ("wmt14_en_de", 1, 128),
        ("wmt14_en_fr", 4, 32),
        ("wmt16_en_ro", 8, 1),
        ("wmt16_en_ro", 1, 8),
        ("iwslt14_de_en", 1, 1),
        ("iwslt14_de_en", 2, 1),
    ],
)
def test_update_freq_keeps_the_paper_batch(name, gpus, freq):
    assert update_freq(get(name), gpus) == freq


def cli_config(name, d_m, gpus=1):
    return convert_namespace_to_omegaconf(
        train_namespace(train_args(get(name), d_m, gpus))
    )


@pytest.mark.parametrize("name, d_m", ALL_ROWS)
def test_shell_and_yaml_recipes_agree(name, d_m):
    recipe = get(name)
    cli = cli_config(name, d_m, recipe.paper_gpus)
    with open(REPO / "configs" / name / f"d{d_m}.yaml") as f:
        conf = yaml.safe_load(f)
    assert conf == yaml.safe_load(
        yaml.safe_dump(hydra_config(recipe, d_m, recipe.paper_gpus))
    )
    # the model fairseq builds from either is the same
    from_cli = vars(resolve(config_from(cli.model)))
    from_yaml = vars(resolve(config_from(argparse.Namespace(**conf["model"]))))
    from_cli.pop("_name"), from_yaml.pop("_name")
    assert from_cli == from_yaml
    assert cli.optimization.lr == conf["optimization"]["lr"]
    assert cli.optimization.max_update == conf["optimization"]["max_update"]
    assert cli.optimization.update_freq == conf["optimization"]["update_freq"]
    assert cli.optimization.clip_norm == conf["optimization"]["clip_norm"]
    assert cli.dataset.max_tokens == conf["dataset"]["max_tokens"]
    assert cli.criterion._name == conf["criterion"]["_name"]
    assert cli.criterion.label_smoothing == conf["criterion"]["label_smoothing"]
    assert ast.literal_eval(cli.optimizer.adam_betas) == ast.literal_eval(
        conf["optimizer"]["adam_betas"]
    )
    for key, value in conf["lr_scheduler"].items():
        assert cli.lr_scheduler[key] == value, key


def test_configs_are_up_to_date():
    files = sorted(
        p.relative_to(REPO / "configs") for p in (REPO / "configs").glob("*/d*.yaml")
    )
    assert [str(p) for p in files] == sorted(f"{n}/d{d}.yaml" for n, d in ALL_ROWS)


def test_iwslt_rows_land_on_the_paper_sizes():
    from helpers import build, n_params

    sizes = []
    for r in get("iwslt14_de_en").rows:
        model = build(
            get("iwslt14_de_en").arch,
            src_vocab=8_848,
            tgt_vocab=6_632,
            delight_emb_out_dim=r.d_m,
            **dict(r.model),
        )
        sizes.append(round(n_params(model) / 1e6))
    assert sizes == [r.paper_params_m for r in get("iwslt14_de_en").rows] == [14, 30]


@pytest.mark.slow
def test_recipe_cli_prints_the_arguments():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "delight_fairseq.tools.training",
            "args",
            "wmt14_en_de",
            "256",
            "--gpus",
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[out.index("--update-freq") + 1] == "16"
    assert out[out.index("--lr") + 1] == "0.007"


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="choose one of"):
        get("wmt15_xx")


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_record_is_complete(name):
    """A benchmark is one record: its preset is registered, its prep function
    exists, its schedule renders, and its table rows have configs."""
    from fairseq.models import ARCH_CONFIG_REGISTRY

    bench = get(name)
    assert all(arch in ARCH_CONFIG_REGISTRY for arch in bench.archs)
    assert callable(getattr(datasets, bench.prep))
    assert training.scheduler(bench)[0] in (
        "cosine",
        "polynomial_decay",
        "inverse_sqrt",
    )
    for r in bench.rows:
        assert (REPO / "configs" / name / f"d{r.d_m}.yaml").is_file()
    # the other direction of a pair keeps the same recipe
    rev = BENCHMARKS.get(name.rsplit("_", 2)[0] + f"_{bench.target}_{bench.source}")
    if rev is not None:
        assert (rev.dropouts, rev.schedule, rev.share_all) == (
            bench.dropouts,
            bench.schedule,
            bench.share_all,
        )


@pytest.mark.slow
def test_hydra_train_runs_a_config_from_configs(tmp_path):
    data = preprocess(
        write_corpus(tmp_path / "raw", 300, 30, 0, seed=2), tmp_path / "bin"
    )
    code, log = hydra_train_tiny(
        data, tmp_path / "ckpt", "optimization.max_update=3", "dataset.max_tokens=800"
    )
    assert "DeLighT: d_m=64, encoder 2 blocks" in log
    assert "done training" in log
    assert (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_train_sh_runs_the_recipe_on_cpu(tmp_path):
    raw = write_corpus(tmp_path / "raw", 300, 30, 0, seed=4)
    for split in ("train", "valid"):
        for side, lang in (("src", "en"), ("tgt", "ro")):
            (raw / f"{split}.{lang}").write_text((raw / f"{split}.{side}").read_text())
    preprocess(raw, tmp_path / "data-bin" / "wmt16_en_ro", src="en", tgt="ro")
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "train.sh"),
            "wmt16_en_ro",
            "128",
            "--max-update",
            "2",
            "--delight-emb-out-dim",
            "64",
            "--max-tokens",
            "600",
            "--update-freq",
            "1",
            "--save-dir",
            str(tmp_path / "ckpt"),
            "--num-workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DELIGHT_VENV": str(Path(sys.executable).parent.parent),
            "DELIGHT_DATA_BIN": str(tmp_path / "data-bin"),
        },
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "training on the CPU" in log
    assert "'lr': [0.0028]" in log and "'_name': 'polynomial_decay'" in log
    assert "DeLighT: d_m=64" in log and "num_updates 2" in log
