"""Training recipes from the catalog: fairseq-train flags and Hydra configs.

:func:`train_args` turns a benchmark, a width d_m and a number of GPUs into
``fairseq-train`` arguments that keep the recipe's tokens per update through
``--update-freq``; :func:`hydra_config` gives the same run as a
``fairseq-hydra-train`` config. Both render one schedule table
(:func:`scheduler`), and a test checks that fairseq reads them alike.

    delight-train BENCHMARK D_M [--gpus N] [fairseq-train args]
    python -m delight_fairseq.tools.training args|yaml|lenpen|rows BENCHMARK [D_M]
    python -m delight_fairseq.tools.training configs [DIR]   # rewrite configs/
"""

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from ..builder import arch_args
from ..catalog import BENCHMARKS, Benchmark, get

logger = logging.getLogger(__name__)
MAX_TOKENS_PER_GPU = 4096
LABEL_SMOOTHING = 0.1
PACKAGE = Path(__file__).resolve().parents[1]  # the plugin: --user-dir


def update_freq(
    bench: Benchmark, gpus: int, max_tokens: int = MAX_TOKENS_PER_GPU
) -> int:
    """Gradient accumulation that keeps the recipe's tokens per update."""
    if gpus < 1:
        raise ValueError(f"--gpus is {gpus}; use 1 or more (1 also means CPU)")
    return max(1, math.ceil(bench.tokens_per_update / (gpus * max_tokens)))


def scheduler(bench: Benchmark) -> Tuple[str, Dict[str, object]]:
    """fairseq's scheduler name and its fields: the one schedule table, rendered
    to flags by :func:`schedule_args` and to Hydra by :func:`hydra_config`."""
    s = bench.schedule
    if s.kind == "cosine":
        return "cosine", {
            "warmup_updates": s.warmup, "warmup_init_lr": 1e-7, "min_lr": 1e-9,
            "t_mult": 1.0, "lr_period_updates": float(s.period), "lr_shrink": 1.0,
        }  # fmt: skip
    if s.kind == "linear":
        return "polynomial_decay", {
            "warmup_updates": s.warmup, "end_learning_rate": 1e-7, "power": 1.0,
            "total_num_update": float(s.max_update),
        }  # fmt: skip
    if s.kind == "inverse_sqrt":
        return "inverse_sqrt", {"warmup_updates": s.warmup, "warmup_init_lr": 1e-7}
    raise ValueError(f"{bench.name}: unknown schedule {s.kind!r}")


def schedule_args(bench: Benchmark, d_m: int) -> List[str]:
    name, fields = scheduler(bench)
    flags = ["--lr-scheduler", name, "--lr", str(bench.schedule.peak_lr(d_m))]
    for key, value in fields.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


def save_dir(bench: Benchmark, d_m: int) -> str:
    return f"checkpoints/{bench.name}_d{d_m}"


def train_args(bench: Benchmark, d_m: int, gpus: int = 1) -> List[str]:
    """fairseq-train arguments (after the data directory) for one table row."""
    return [
        "--arch", bench.arch, "--delight-emb-out-dim", str(d_m),
        *[f"--{k.replace('_', '-')}={v}" for k, v in bench.row(d_m).model],
        "--source-lang", bench.source, "--target-lang", bench.target,
        "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--clip-norm", "0.0",
        "--weight-decay", "0.0", "--criterion", "delight_label_smoothed_cross_entropy",
        "--label-smoothing", str(LABEL_SMOOTHING),
        *schedule_args(bench, d_m),
        "--max-update", str(bench.schedule.max_update),
        "--max-tokens", str(MAX_TOKENS_PER_GPU),
        "--update-freq", str(update_freq(bench, gpus)),
        "--keep-last-epochs", "10", "--save-dir", save_dir(bench, d_m),
    ]  # fmt: skip


def model_fields(bench: Benchmark, d_m: int) -> dict:
    """Every DeLighT field of the row, as the preset's architecture sets it."""
    from ..config import DeLighTConfig

    args = arch_args(bench.arch, delight_emb_out_dim=d_m, **dict(bench.row(d_m).model))
    return {
        name: getattr(args, name)
        for name in DeLighTConfig.__dataclass_fields__
        if hasattr(args, name)
        and name != "_name"
        and not str(getattr(args, name)).startswith("${")
    }


def hydra_config(bench: Benchmark, d_m: int, gpus: int = 1) -> dict:
    """The same run as :func:`train_args`, as a fairseq-hydra-train config."""
    name, fields = scheduler(bench)
    return {
        "task": {"_name": "translation", "data": f"data-bin/{bench.name}",
                 "source_lang": bench.source, "target_lang": bench.target},
        "model": {"_name": "delight_transformer", **model_fields(bench, d_m)},
        "criterion": {"_name": "delight_label_smoothed_cross_entropy",
                      "label_smoothing": LABEL_SMOOTHING},
        "optimizer": {"_name": "adam", "adam_betas": "(0.9, 0.98)", "weight_decay": 0.0},
        "lr_scheduler": {"_name": name, **fields},
        "optimization": {"lr": [bench.schedule.peak_lr(d_m)],
                         "max_update": bench.schedule.max_update, "clip_norm": 0.0,
                         "update_freq": [update_freq(bench, gpus)]},
        "dataset": {"max_tokens": MAX_TOKENS_PER_GPU},
        "checkpoint": {"save_dir": save_dir(bench, d_m), "keep_last_epochs": 10},
    }  # fmt: skip


def hydra_yaml(bench: Benchmark, d_m: int, gpus: int) -> str:
    import yaml

    lines = [f"# {bench.name}, d_m {d_m}: the recipe on {gpus} GPU(s)."]
    lines.append(
        f"# On N GPUs set optimization.update_freq=[{bench.tokens_per_update} / (N * 4096)]."
    )
    if bench.note:
        lines.append(f"# Note: {bench.note}.")
    body = yaml.safe_dump(hydra_config(bench, d_m, gpus), sort_keys=False)
    return "\n".join(lines) + "\n" + body


def write_configs(root: Path) -> List[Path]:
    """configs/<benchmark>/d<d_m>.yaml for every row of every benchmark."""
    written = []
    for bench in BENCHMARKS.values():
        for row in bench.rows:
            path = root / bench.name / f"d{row.d_m}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(hydra_yaml(bench, row.d_m, bench.paper_gpus))
            written.append(path)
    return written


def train(bench: Benchmark, d_m: int, data_bin: Path, gpus: int = 1, extra=()) -> None:
    """fairseq-train on one row, in this process (``delight-train``)."""
    import torch
    from fairseq_cli.train import cli_main

    data = Path(data_bin) / bench.name
    if not list(data.glob("dict.*.txt")):
        raise FileNotFoundError(
            f"no binarized data in {data}: run `delight-prep {bench.name}` first, or "
            "pass --data-bin"
        )
    argv = [str(data), "--user-dir", str(PACKAGE), *train_args(bench, d_m, gpus)]
    if torch.cuda.device_count() == 0:
        logger.info(
            "no GPU: training on the CPU with --update-freq for the recipe's batch"
        )
        argv.append("--cpu")
    elif gpus > 1:
        argv += ["--distributed-world-size", str(gpus)]
    sys.argv = ["fairseq-train", *argv, *extra]
    cli_main()


def add_data_bin(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-bin",
        type=Path,
        default=Path(os.environ.get("DELIGHT_DATA_BIN", "data-bin")),
        help="where the data-bin folders are (default: $DELIGHT_DATA_BIN or data-bin)",
    )


def train_main(argv=None):
    parser = argparse.ArgumentParser(
        prog="delight-train",
        description="train one row of a benchmark's recipe (catalog.py) with fairseq-train; "
        "extra arguments go to fairseq-train and win over the recipe",
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("d_m", type=int)
    parser.add_argument("--gpus", type=int, default=1)
    add_data_bin(parser)
    args, extra = parser.parse_known_args(argv)
    try:
        train(get(args.benchmark), args.d_m, args.data_bin, args.gpus, extra)
    except FileNotFoundError as e:
        parser.exit(1, f"delight-train: error: {e}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="a benchmark's recipe for one table row"
    )
    parser.add_argument("what", choices=["args", "yaml", "lenpen", "rows", "configs"])
    parser.add_argument("benchmark", nargs="?", help="a name of catalog.py")
    parser.add_argument("d_m", type=int, nargs="?", default=0)
    parser.add_argument(
        "--gpus", type=int, help="default: 1 for args, the paper's for yaml"
    )
    args = parser.parse_args(argv)
    if args.what == "configs":
        root = Path(args.benchmark or PACKAGE.parent / "configs")
        print(f"wrote {len(write_configs(root))} configs under {root}")
        return
    if args.benchmark not in BENCHMARKS:
        parser.error(f"choose a benchmark of {sorted(BENCHMARKS)}")
    bench = get(args.benchmark)
    if args.what == "rows":
        print(" ".join(str(r.d_m) for r in bench.rows))
    elif args.what == "lenpen":
        print(bench.lenpen)
    elif args.what == "args":
        print("\n".join(train_args(bench, args.d_m, args.gpus or 1)))
    else:
        print(hydra_yaml(bench, args.d_m, args.gpus or bench.paper_gpus), end="")


if __name__ == "__main__":
    main()
