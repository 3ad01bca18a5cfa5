"""Translation speed, memory and BLEU on the CPU: DeLighT through fairseq's beam
search and through the lean engine (fp32, int8), against the shoot-out's fairseq
transformer through fairseq and through CTranslate2 (float32, int8).

    python benchmarks/translate.py --delight CKPT --transformer CKPT
        [--lenpen-delight 1.0] [--lenpen-transformer 1.0] [--threads 1 2] [--beams 5 1]
        [--engines ...] [--sentences N] [--out benchmarks/out/translate]

e.g. --delight benchmarks/out/shootout/delight_d192/seed1/checkpoint_best.pt
     --transformer benchmarks/out/shootout/transformer_256/seed1/checkpoint_best.pt

Every engine translates the same Multi30k test sentences (the first ``--sentences``
of test_2016_flickr.de) at each thread count and beam, one configuration at a time,
each in a fresh process: its peak RSS is that process's VmHWM (the CTranslate2 ones
never import torch), its CPU share (CPU time over wall time x threads) flags a run
that shared the machine. All encode the raw text with the data-bin's spm.model; the
outputs are sentencepiece-decoded and scored with sacreBLEU against the raw
test_2016_flickr.en. Timed: subword pieces in, pieces out (dictionary look-ups,
batching, search), after an untimed warm-up (WARMUP sentences). Batches of BATCH
sentences in order of source length (fairseq's order; CTranslate2's
``max_batch_size``, ``batch_type="examples"`` sorts the same way). Search:
fairseq-generate's defaults (max length MAX_LEN, min 1) with the model's
``--lenpen-*``; CTranslate2 gets the same beam, length penalty and maximum length,
``inter_threads=1, intra_threads=N``. Target tokens: output subwords, eos excluded.
The ``-workers`` engines spend N threads on N batches at once instead (one thread
each): N engines in an ``EnginePool``; CTranslate2 with ``inter_threads=N,
intra_threads=1``; delight-lite with N worker processes. At 1 thread they are the
plain engines and are not run.

Engines: ``delight-fairseq`` (fairseq's SequenceGenerator through
``task.inference_step``, as fairseq-generate), ``delight-engine``
(``delight_fairseq.inference.Engine``, its float32 products on oneDNN where a
one-time measurement finds it faster: ``matmul="auto"``), ``delight-engine-torch``
(the same with ``matmul="torch"``: the products through ``F.linear``, as the
model's modules), ``delight-engine-int8`` (the engine after
``Engine(..., int8=True)``), ``transformer-fairseq``, ``transformer-ct2`` and ``transformer-ct2-int8``
(the checkpoint converted once by ``ct2-fairseq-converter``, run by
``ctranslate2.Translator`` with compute_type float32 / int8) and ``delight-lite``
(the DeLighT checkpoint exported once by ``delight-export``, decoded by
``delight_lite.search.Search`` in NumPy: no torch in that process either; its
products run on NumPy's OpenBLAS, whose kernel choice ``OPENBLAS_CORETYPE``
overrides, recorded with the versions; ``delight-lite-workers``' peak RSS is the
sum of its processes'). Writes
OUT/results.json, OUT/table.md, OUT/translate.png (BLEU against sentences/s),
OUT/hyps/ (each configuration's translations) and prints the table. Run it alone:
the figures are wall-clock figures. Each configuration runs in a child process,
``translate_engines.py``, which holds the runners and BATCH, WARMUP and MAX_LEN.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from procstat import cpu_model  # benchmarks/procstat.py
from translate_engines import BATCH  # benchmarks/translate_engines.py: the children
from translate_report import plot, table  # benchmarks/translate_report.py

CT2_DIR = "ct2_transformer"
LITE_DIR = "lite_delight"
ENGINE_SCRIPT = Path(__file__).resolve().parent / "translate_engines.py"
SOURCE = "test_2016_flickr.de"  # the references: multi30k.REFERENCES["test"]
# engine -> (model flag, runner, option, threads on batches instead of on ops)
ENGINES = {
    "delight-fairseq": ("delight", "fairseq", None, False),
    "delight-engine": ("delight", "engine", None, False),
    "delight-engine-torch": ("delight", "engine", "torch", False),
    "delight-engine-int8": ("delight", "engine", "int8", False),
    "delight-engine-workers": ("delight", "engine", None, True),
    "delight-engine-int8-workers": ("delight", "engine", "int8", True),
    "delight-lite": ("delight", "lite", None, False),
    "delight-lite-workers": ("delight", "lite", None, True),
    "transformer-fairseq": ("transformer", "fairseq", None, False),
    "transformer-ct2": ("transformer", "ct2", "float32", False),
    "transformer-ct2-int8": ("transformer", "ct2", "int8", False),
    "transformer-ct2-workers": ("transformer", "ct2", "float32", True),
    "transformer-ct2-int8-workers": ("transformer", "ct2", "int8", True),
}


def convert(transformer: Path, data: Path, dest: Path) -> Path:
    """The transformer in CTranslate2's format (float32 weights; int8 at load time)."""
    tool = str(Path(sys.executable).parent / "ct2-fairseq-converter")
    cmd = [tool, "--model_path", str(transformer), "--data_dir", str(data),
           "--output_dir", str(dest), "--force"]  # fmt: skip
    # fairseq checkpoints pickle their arguments: newer converters load them only
    # when told to (older ones always did)
    flag = "--unsafe_deserialization"
    if flag in subprocess.run([tool, "--help"], capture_output=True, text=True).stdout:
        cmd.append(flag)
    return run_tool(cmd, dest, "ct2_convert.log")


def export_lite(delight: Path, data: Path, dest: Path) -> Path:
    """The DeLighT checkpoint exported for delight_lite (delight-export)."""
    tool = str(Path(sys.executable).parent / "delight-export")
    return run_tool(
        [tool, str(delight), "--data", str(data), "--out", str(dest)],
        dest,
        "lite_export.log",
    )


def run_tool(cmd, dest: Path, log_name: str) -> Path:
    """Run a conversion tool that writes ``dest``, its output into a log beside
    it; stop with the log's name if it fails."""
    log = dest.parent / log_name
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{Path(cmd[0]).name} failed (rc {proc.returncode}): see {log}")
    return dest


def run_child(spec: dict) -> dict:
    n = "1" if spec["workers"] else str(spec["threads"])  # intra-op threads
    env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n)
    cmd = [sys.executable, str(ENGINE_SCRIPT), json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(
            f"{spec['label']} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def score(hyps_file: Path, refs) -> dict:
    import sacrebleu

    hyps = hyps_file.read_text(encoding="utf-8").splitlines()
    if len(hyps) != len(refs):
        raise ValueError(f"{hyps_file}: {len(hyps)} lines for {len(refs)} references")
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    return {"bleu": round(bleu.score, 2), "bp": round(bleu.bp, 3)}


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(name):
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} absent"

    packages = ", ".join(
        of(n) for n in ("torch", "fairseq-fixed", "ctranslate2", "numpy")
    )
    # delight-lite's products run on NumPy's OpenBLAS, whose kernels this selects
    return (
        f"{packages}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}"
    )


def check(parser, args, data: Path) -> dict:
    """The data-bin and the checkpoints the chosen engines need; returns them."""
    for needed in (data / "spm.model", data / "dict.de.txt"):
        if not needed.is_file():
            parser.error(
                f"--data: no {needed.name} in {data} (delight-prep multi30k_de_en)"
            )
    checkpoints = {"delight": args.delight, "transformer": args.transformer}
    for model in sorted({ENGINES[e][0] for e in args.engines}):
        path = checkpoints[model]
        if path is None or not path.is_file():
            users = ", ".join(e for e in args.engines if ENGINES[e][0] == model)
            why = "no checkpoint given" if path is None else f"no file at {path}"
            parser.error(
                f"--{model}: {why} ({users} need it; or leave them out with --engines)"
            )
    return checkpoints


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delight", type=Path, help="the DeLighT checkpoint")
    parser.add_argument("--transformer", type=Path, help="the fairseq transformer's")
    parser.add_argument("--lenpen-delight", type=float, default=1.0)
    parser.add_argument("--lenpen-transformer", type=float, default=1.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    parser.add_argument(
        "--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES)
    )
    parser.add_argument(
        "--sentences", type=int, help="the first N (default: all 1,000)"
    )
    parser.add_argument("--data", type=Path, help="the Multi30k data-bin")
    parser.add_argument("--out", type=Path, help="default benchmarks/out/translate")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import multi30k

    data = args.data or multi30k.DATA_BIN
    out = args.out or multi30k.OUT / "translate"
    checkpoints = check(parser, args, data)
    lenpens = {"delight": args.lenpen_delight, "transformer": args.lenpen_transformer}
    refs = (multi30k.RAW / multi30k.REFERENCES["test"]).read_text(encoding="utf-8")
    refs = refs.splitlines()[: args.sentences]
    skipped, engines = {}, []
    for engine in args.engines:
        runner = ENGINES[engine][1]
        if runner == "ct2" and not importable("ctranslate2"):
            skipped[engine] = "ctranslate2 is not installed (pip install -e '.[bench]')"
        else:
            engines.append(engine)
    (out / "hyps").mkdir(parents=True, exist_ok=True)
    ct2_model = None
    if any(ENGINES[e][1] == "ct2" for e in engines):
        ct2_model = convert(args.transformer, data, out / CT2_DIR)
    lite_model = None
    if any(ENGINES[e][1] == "lite" for e in engines):
        lite_model = export_lite(args.delight, data, out / LITE_DIR)

    results = {
        "sentences": len(refs),
        "batch": BATCH,
        "lenpen": lenpens,
        "checkpoints": {k: str(v) for k, v in checkpoints.items() if v},
        "versions": versions(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "skipped": skipped,
        "runs": [],
    }
    for threads, beam, engine in itertools.product(args.threads, args.beams, engines):
        model, runner, option, workers = ENGINES[engine]
        if workers and threads == 1:
            continue  # the plain engine's run
        label = f"{engine}_t{threads}_b{beam}"
        spec = dict(
            label=label, runner=runner, option=option, threads=threads, beam=beam,
            workers=workers,
            lenpen=lenpens[model], checkpoint=str(checkpoints[model]), data=str(data),
            ct2_model=str(ct2_model), lite_model=str(lite_model),
            spm=str(data / "spm.model"),
            source=str(multi30k.RAW / SOURCE), sentences=len(refs),
            hyps=str(out / "hyps" / f"{label}.en"),
        )  # fmt: skip
        print(f"running {label} ...", file=sys.stderr, flush=True)
        got = run_child(spec)
        cpu_share = got["cpu_seconds"] / (got["seconds"] * threads)
        if cpu_share < multi30k.MIN_CPU_SHARE:
            multi30k.logger.warning(
                "%s used %.0f%% of its %d thread(s): either something else ran "
                "beside it (then its speed is not comparable) or the engine left "
                "its threads idle (CTranslate2 int8 with 2 threads did, alone)",
                label, 100 * cpu_share, threads,
            )  # fmt: skip
        results["runs"].append(
            {
                "engine": engine, "threads": threads, "beam": beam,
                "lenpen": lenpens[model], "seconds": round(got["seconds"], 2),
                "sentences_per_s": round(len(refs) / got["seconds"], 2),
                "target_tokens": got["target_tokens"],
                "target_tokens_per_s": round(got["target_tokens"] / got["seconds"], 1),
                "peak_rss_mib": round(got["peak_rss_mib"], 1),
                "cpu_share": round(cpu_share, 3),
                **score(Path(spec["hyps"]), refs),
            }
        )  # fmt: skip
        (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(table(results, BATCH))
    if results["runs"]:
        plot(results, out / "translate.png", ENGINES)
    print(table(results, BATCH))


if __name__ == "__main__":
    main()
