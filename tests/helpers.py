"""What the tests share: paths, the model builder, fairseq's CLIs on tiny data.

Import it as ``from helpers import ...``; pytest fixtures live in conftest.py.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from fairseq.data import Dictionary

from delight_fairseq.builder import build_model, sized_dictionary

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
USER_DIR = str(REPO / "delight_fairseq")
SHARED_DATA = Path(
    os.environ.get("DELIGHT_SHARED_DATA", REPO.parent / "shared" / "data")
)


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, with benchmarks/ on the path while it loads
    (the scripts import each other: multi30k, procstat)."""
    import importlib.util

    folder = str(REPO / "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, f"{folder}/{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def make_dictionary(n_symbols: int) -> Dictionary:
    """A fairseq dictionary of exactly ``n_symbols`` entries (specials included)."""
    d = sized_dictionary(n_symbols)
    assert len(d) == n_symbols
    return d


def build(
    arch: str = "delight", src_vocab: int = 100, tgt_vocab: int = None, **overrides
):
    """Build a model through fairseq's registry, as fairseq-train does."""
    src = make_dictionary(src_vocab)
    tgt = None if tgt_vocab is None else make_dictionary(tgt_vocab)
    return build_model(arch, src, tgt, **overrides)


def train_namespace(flags, data: str = "data-bin/x"):
    """What fairseq's training parser makes of ``flags`` with this plugin loaded
    (the last of a repeated flag wins, as on the command line)."""
    from fairseq import options

    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, [data, "--user-dir", USER_DIR, *flags])


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_cli(tool, *args, stdin=None, env=None, check=True):
    """Run one of fairseq's console scripts from this environment; returns
    (exit code, stdout + stderr). ``stdin`` is text or raw bytes. With ``check``
    a failure raises with the log."""
    full_env = dict(os.environ, **(env or {}))
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    # this environment's script; else the one on PATH (pip --target installs,
    # as benchmarks/device_check.sh makes them, put scripts elsewhere)
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool) or BIN / tool
    proc = subprocess.run(
        [str(exe), *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=900,
        env=full_env,
    )
    out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    if check and proc.returncode:
        raise AssertionError(f"{tool} failed ({proc.returncode}):\n{out[-4000:]}")
    return proc.returncode, out


def preprocess(raw, dest, src="src", tgt="tgt", joined=True):
    """fairseq-preprocess a {train,valid,test}.{src,tgt} folder."""
    args = [
        "--source-lang",
        src,
        "--target-lang",
        tgt,
        "--destdir",
        dest,
        "--workers",
        "1",
    ]
    for split, flag in (
        ("train", "--trainpref"),
        ("valid", "--validpref"),
        ("test", "--testpref"),
    ):
        if (Path(raw) / f"{split}.{src}").exists():
            args += [flag, Path(raw) / split]
    run_cli("fairseq-preprocess", *args, *(["--joined-dictionary"] if joined else []))
    return dest


#: A tiny DeLighT as builder keyword arguments (``build("delight", **TINY_SHAPE)``):
#: d_m 32, embedding DExTra depth 2, 2 + 2 blocks of DExTra depth 2 -> 3.
TINY_SHAPE = dict(
    delight_emb_out_dim=32,
    delight_emb_depth=2,
    delight_enc_layers=2,
    delight_enc_min_depth=2,
    delight_enc_max_depth=3,
    delight_dec_layers=2,
    delight_dec_min_depth=2,
    delight_dec_max_depth=3,
)
#: every dropout off, as builder keyword arguments (NO_DROPOUT below: as flags)
DROPOUT_OFF = dict(
    dropout=0.0,
    attention_dropout=0.0,
    delight_dropout=0.0,
    delight_emb_dropout=0.0,
    pe_dropout=0.0,
    ffn_dropout=0.0,
)

#: A small DeLighT that learns the synthetic task in seconds.
TINY_MODEL = (
    "--arch delight --delight-emb-out-dim 64 --delight-emb-depth 2 --share-all-embeddings "
    "--delight-enc-layers 2 --delight-enc-min-depth 2 --delight-enc-max-depth 3 "
    "--delight-dec-layers 2 --delight-dec-min-depth 2 --delight-dec-max-depth 3"
).split()
NO_DROPOUT = [x for name in DROPOUT_OFF for x in ("--" + name.replace("_", "-"), "0")]
TRAIN = [
    *"--criterion delight_label_smoothed_cross_entropy --label-smoothing 0.1".split(),
    *"--optimizer adam --adam-betas".split(),
    "(0.9, 0.98)",
    *"--lr 0.005 --lr-scheduler inverse_sqrt --warmup-updates 30 --max-tokens 1500".split(),
    *"--cpu --no-epoch-checkpoints --seed 1 --log-format simple --log-interval 20".split(),
    *"--num-workers 0".split(),
]


def hydra_train_tiny(data, save_dir, *overrides, cpu=True):
    """fairseq-hydra-train on configs/wmt16_en_ro/d128.yaml, shrunk to a tiny model
    on a src/tgt data-bin; ``overrides`` add the test's own settings."""
    return run_cli(
        "fairseq-hydra-train", "--config-dir", REPO / "configs" / "wmt16_en_ro",
        "--config-name", "d128", f"common.user_dir={USER_DIR}", f"common.cpu={str(cpu).lower()}",
        f"task.data={data}", "task.source_lang=src", "task.target_lang=tgt",
        "model.delight_emb_out_dim=64", "model.delight_enc_layers=2",
        "model.delight_dec_layers=2", "optimization.update_freq=[1]",
        "dataset.num_workers=0", f"checkpoint.save_dir={save_dir}",
        f"hydra.run.dir={save_dir}_hydra", *overrides,
    )  # fmt: skip


def encode_words(d: Dictionary, text: str) -> torch.Tensor:
    """Whitespace-split words to their indices, with the final eos."""
    return torch.tensor([d.index(w) for w in text.split()] + [d.eos()])


def train_on_pairs(model, d: Dictionary, pairs, steps: int, batch_size: int):
    """A few Adam steps (LR 5e-3, label smoothing 0.1) on (source, target) text
    pairs, batched as fairseq's translation task does (left-padded source), in
    this process; returns the model in eval mode."""
    import random

    import torch.nn.functional as F
    from fairseq.data import data_utils

    opt = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.98))
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, batch_size)
        srcs = [encode_words(d, s) for s, _ in batch]
        tgt = [encode_words(d, t) for _, t in batch]
        src = data_utils.collate_tokens(srcs, d.pad(), d.eos(), left_pad=True)
        target = data_utils.collate_tokens(tgt, d.pad(), d.eos())
        prev = data_utils.collate_tokens(
            tgt, d.pad(), d.eos(), move_eos_to_beginning=True
        )
        logits, _ = model(src, torch.tensor([len(x) for x in srcs]), prev)
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)),
            target.view(-1),
            ignore_index=d.pad(),
            label_smoothing=0.1,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
