"""Multi30k De->En on the CPU: the shoot-out's models and one training run of a
model. Shared by tune.py, curves.py, shootout.py and trials.py (the 60-minute trials,
which build on these models); scoring.py scores a checkpoint.

Every model trains with the same data, batch (4,096 tokens), optimizer and
criterion (COMMON); MODELS holds what differs (and comes after COMMON on the command
line, so it may override it): the shape and its recipe. The DeLighT models are the
catalog's ``multi30k_de_en`` recipe (delight_fairseq/catalog.py). ``annealing`` and
``for_updates`` build the trials' cosine schedules from a model's flags.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
DATA_BIN = OUT / "multi30k_cpu" / "data-bin" / "multi30k_de_en"
RAW = Path(os.environ.get("MULTI30K", ROOT.parent / "shared" / "data" / "multi30k"))
# the raw references: validation for every choice, the test set only for reporting
REFERENCES = {"valid": "val.en", "test": "test_2016_flickr.en"}
LENPENS = (0.6, 1.0, 1.4, 2.0)

logger = logging.getLogger("multi30k")
# below this share of the machine's cores, a training run is flagged as contended
MIN_CPU_SHARE = 0.85

COMMON = [
    "--share-all-embeddings", "--criterion", "delight_label_smoothed_cross_entropy",
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr-scheduler", "inverse_sqrt",
    "--warmup-init-lr", "1e-7", "--max-tokens", "4096", "--cpu", "--num-workers", "0",
    "--log-format", "simple", "--log-interval", "50", "--max-epoch", "1000",
]  # fmt: skip

TRANSFORMER_3x256 = [
    "--arch", "transformer", "--encoder-layers", "3", "--decoder-layers", "3",
    "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
    "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
]  # fmt: skip


def delight_shape(d_m: int) -> List[str]:
    """4 + 4 blocks, block-wise scaling 3 -> 6, width multiplier 2 (README, Benchmarks)."""
    shape = ["--arch", "delight", "--delight-emb-out-dim", str(d_m)]
    for side in ("enc", "dec"):
        shape += [f"--delight-{side}-layers", "4", f"--delight-{side}-min-depth", "3",
                  f"--delight-{side}-max-depth", "6"]  # fmt: skip
    return shape


def recipe(
    lr: float,
    warmup: int = 400,
    dropout: float = 0.2,
    smoothing: float = 0.1,
    attention: float = 0.05,
    delight: float = None,
) -> List[str]:
    """Peak LR, warmup, dropouts and label smoothing; ``delight`` only for DeLighT
    (its DExTra dropout; the FFN dropout follows ``dropout``)."""
    flags = ["--lr", str(lr), "--warmup-updates", str(warmup), "--dropout", str(dropout),
             "--attention-dropout", str(attention), "--label-smoothing", str(smoothing)]  # fmt: skip
    if delight is not None:
        flags += ["--ffn-dropout", str(dropout), "--delight-dropout", str(delight)]
    return flags


# The hand-set recipes of the first shoot-out (issue 4); tune.py searches around them.
BASE = {
    "delight": dict(lr=0.003, dropout=0.2, attention=0.05, delight=0.05),
    "transformer": dict(lr=0.001, dropout=0.3, attention=0.0),
}
# the transformer's recipe as tune.py chose it on validation (docs/recipes.md)
TRANSFORMER_RECIPE = dict(BASE["transformer"], lr=0.002, warmup=250)


def delight(d_m: int) -> List[str]:
    """The catalog's small-data recipe at width d_m, without its update limit
    (the benchmarks stop on wall clock)."""
    from delight_fairseq.catalog import get
    from delight_fairseq.tools.training import train_args

    return train_args(get("multi30k_de_en"), d_m) + ["--max-update", "0"]


MODELS: Dict[str, List[str]] = {
    "delight_d128": delight(128),
    "delight_d192": delight(192),
    "transformer_256": TRANSFORMER_3x256 + recipe(**TRANSFORMER_RECIPE),
}


def flag_value(flags: Sequence[str], flag: str) -> str:
    """The value of ``flag`` in a command line: its last one, as argparse reads it."""
    return flags[max(i for i, f in enumerate(flags) if f == flag) + 1]


def annealing(flags: List[str], updates: int, margin: float = 1.03) -> List[str]:
    """The flags that replace inverse_sqrt's decay in ``flags`` by one cosine
    period: the same warmup and peak LR, then down to 0 at ``updates`` times
    ``margin`` (3 % more by default, so that a run a little faster than ``updates``
    does not start a second period; 1 for a run that stops at ``updates``).
    ``updates``: what the model makes in the budget alone (its runs' mean)."""
    period = round(updates * margin) - int(flag_value(flags, "--warmup-updates"))
    return ["--lr-scheduler", "cosine", "--lr-period-updates", str(period)]


# the flags that anneal the LR over the run's wall clock instead (the plugin's
# wallclock_cosine, to multi30k.train's --stop-time-hours): the same warmup and peak
CLOCK = ["--lr-scheduler", "wallclock_cosine"]


def for_updates(flags: List[str], updates: int) -> List[str]:
    """A d_m 192 trial's ``flags`` for ``updates`` updates instead of a wall-clock
    budget, its LR annealed to 0 over them."""
    return (
        flags
        + annealing(MODELS["delight_d192"], updates, margin=1.0)
        + ["--max-update", str(updates)]
    )


def family(model: str) -> str:
    return "transformer" if model.startswith("transformer") else "delight"


def data_bin(pieces: Optional[int] = None) -> Path:
    """Where the data-bin of ``pieces`` sentencepiece pieces lives (None: the
    recipe's own, DATA_BIN)."""
    if pieces is None:
        return DATA_BIN
    return DATA_BIN.with_name(f"{DATA_BIN.name}_{pieces}")


def prepare(pieces: Optional[int] = None) -> Path:
    """The Multi30k data-bin (made with ``delight-prep multi30k_de_en`` when missing;
    ``pieces``: its ``--subwords``, None for the recipe's)."""
    dest = data_bin(pieces)
    if not (dest / "dict.de.txt").exists():
        from delight_fairseq.catalog import get
        from delight_fairseq.tools.prep.cli import prepare as prep
        from delight_fairseq.tools.prep.pipeline import Options

        prep(get("multi30k_de_en"), Options(dest=dest, raw=RAW, subwords=pieces))
    return dest


def train(
    flags: Sequence[str], save_dir: Path, minutes: float, seed: int, extra=(), data=None
) -> dict:
    """One fairseq-train run for a wall-clock budget, on ``data`` (default: the
    recipe's data-bin); returns its time and peak RSS."""
    save_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(Path(sys.executable).parent / "fairseq-train"), str(data or prepare()),
        "--user-dir", str(ROOT / "delight_fairseq"),
        *COMMON, *flags, "--seed", str(seed), "--stop-time-hours", str(minutes / 60),
        "--save-dir", str(save_dir), *extra,
    ]  # fmt: skip
    logger.info("training %s for %s min (seed %d)", save_dir, minutes, seed)
    start = time.time()
    # user and system CPU seconds, wall seconds, peak RSS (KiB, last)
    timing = ["/usr/bin/time", "-f", "%U %S %e %M", "-o", str(save_dir / "rss_kb")]
    with open(save_dir / "train.log", "w") as log:
        proc = subprocess.run([*timing, *cmd], stdout=log, stderr=subprocess.STDOUT)
    if not (save_dir / "checkpoint_last.pt").exists():
        raise RuntimeError(f"training failed (rc {proc.returncode}): see {log.name}")
    user, system, wall, rss_kb = (save_dir / "rss_kb").read_text().split()[-4:]
    # a wall-clock benchmark is only fair if nothing else ran beside it
    cpu_share = (float(user) + float(system)) / (float(wall) * (os.cpu_count() or 1))
    if cpu_share < MIN_CPU_SHARE:
        logger.warning(
            "%s used %.0f%% of the CPU: something else ran beside it, so its "
            "wall-clock figures (updates, tokens/s) are not comparable",
            save_dir, 100 * cpu_share,
        )  # fmt: skip
    return {
        "wall_s": round(time.time() - start, 1),
        "peak_rss_mib": round(int(rss_kb) / 1024),
        "cpu_share": round(cpu_share, 3),
    }


def parse_args(
    parser: argparse.ArgumentParser, argv=None, models: Dict[str, List[str]] = MODELS
) -> argparse.Namespace:
    """A benchmark's arguments, with ``--models`` checked against ``models``; sets up
    logging."""
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(name)s | %(message)s", level="INFO")
    unknown = set(args.models) - set(models)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; known: {list(models)}")
    return args
