"""The children of benchmarks/translate.py: one engine, in a process of its own,
translating the test sentences (``python translate_engines.py SPEC_JSON`` prints
the run's time, CPU time, output tokens and peak memory as JSON). The runners:
:func:`torch_translator` (fairseq's generator or the engine), :func:`ct2_translator`
(CTranslate2) and :func:`lite_translator` (delight_lite); the last two never import
torch. The engines and their settings are described in translate.py."""

import json
import sys
import time
from pathlib import Path

from procstat import cpu_seconds, peak_rss_mib  # benchmarks/procstat.py

BATCH = 64  # sentences per batch (the setting)
WARMUP = 8  # sentences translated once, untimed, before the clock starts
MAX_LEN = 200  # fairseq-generate's max_len_b (max_len_a 0): output tokens, eos excluded


def in_batches(ids, search, batches_at_once=map):
    """Each sentence's hypothesis, in input order: the sentences sorted by
    length (fairseq's order), cut into batches of BATCH, each batch's source
    ids given to ``search``; ``batches_at_once`` maps it over the batches
    (``map``, or a pool's map that runs them side by side)."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    found = batches_at_once(lambda batch: search([ids[i] for i in batch]), batches)
    out = [None] * len(ids)
    for batch, hyps in zip(batches, found):
        for i, hyp in zip(batch, hyps):
            out[i] = hyp
    return out


def torch_translator(spec):
    """pieces -> pieces through fairseq's generator or the engine (in this process)."""
    import torch

    workers = spec["threads"] if spec["workers"] else 1
    torch.set_num_threads(spec["threads"] // workers)
    from fairseq import checkpoint_utils
    from fairseq.data import data_utils

    import delight_fairseq  # noqa: F401  (the plugin, before the checkpoint loads)

    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [spec["checkpoint"]], arg_overrides={"data": spec["data"]}
    )
    model = models[0].eval()
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    beam, lenpen = spec["beam"], spec["lenpen"]
    if spec["runner"] == "fairseq":
        from fairseq.dataclass.configs import GenerationConfig

        generator = task.build_generator(
            [model], GenerationConfig(beam=beam, lenpen=lenpen, max_len_b=MAX_LEN)
        )

        def search(tokens, lengths):
            sample = {
                "id": torch.arange(len(tokens)),
                "net_input": {"src_tokens": tokens, "src_lengths": lengths},
            }
            hypos = task.inference_step(generator, [model], sample)
            eos = tgt_dict.eos()
            return [[t for t in h[0]["tokens"].tolist() if t != eos] for h in hypos]

        pool = None
    else:
        from delight_fairseq.inference.engine import Engine
        from delight_fairseq.inference.pool import EnginePool

        pool = EnginePool([
            Engine(model, tgt_dict, beam=beam, lenpen=lenpen, max_len_b=MAX_LEN,
                   int8=spec["option"] == "int8",
                   matmul="torch" if spec["option"] == "torch" else "auto")
            for _ in range(workers)
        ])  # fmt: skip
        search = pool.translate

    pad, eos = src_dict.pad(), src_dict.eos()

    @torch.no_grad()
    def decode(batch_ids):
        tokens = data_utils.collate_tokens(batch_ids, pad, eos, left_pad=True)
        return search(tokens, torch.tensor([len(x) for x in batch_ids]))

    def translate(pieces):
        ids = [
            src_dict.encode_line(" ".join(p), add_if_not_exist=False).long()
            for p in pieces
        ]
        hyps = in_batches(ids, decode, pool.map if pool else map)
        return [[tgt_dict[t] for t in hyp] for hyp in hyps]

    return translate


def ct2_translator(spec):
    """pieces -> pieces through ctranslate2.Translator (no torch in this process)."""
    import ctranslate2

    translator = ctranslate2.Translator(
        spec["ct2_model"],
        device="cpu",
        compute_type=spec["option"],
        inter_threads=spec["threads"] if spec["workers"] else 1,
        intra_threads=1 if spec["workers"] else spec["threads"],
    )

    def translate(pieces):
        results = translator.translate_batch(
            pieces,
            max_batch_size=BATCH,
            batch_type="examples",
            beam_size=spec["beam"],
            length_penalty=spec["lenpen"],
            max_decoding_length=MAX_LEN,
        )
        return [r.hypotheses[0] for r in results]

    return translate


def lite_translator(spec):
    """pieces -> pieces through delight_lite (NumPy; no torch in this process).
    The -workers engine decodes in spawned processes of one BLAS thread each
    (delight_lite.workers): ``translate.finish()`` stops them and gives the sum
    of their peak memory and of their searches' CPU time (the warm-up's too)."""
    from threadpoolctl import threadpool_limits

    from delight_lite.model import read_config
    from delight_lite.search import Options, Search
    from delight_lite.translate import Vocabulary
    from delight_lite.workers import Workers

    folder = Path(spec["lite_model"])
    options = Options(beam=spec["beam"], lenpen=spec["lenpen"], max_len_b=MAX_LEN)
    config = read_config(folder)
    src, tgt = Vocabulary(config["source"]), Vocabulary(config["target"])
    workers = limits = None
    if spec["workers"]:
        workers = Workers(spec["threads"], folder, options, threads=1)
        search, batches_at_once = workers.search, workers.map
    else:
        from delight_lite.model import Model

        limits = threadpool_limits(limits=spec["threads"], user_api="blas")
        local = Search(Model(folder), options)

        def search(sources):
            return [hyp for hyp, _ in local.translate(sources)]

        batches_at_once = map

    def translate(pieces):
        ids = [src.encode(" ".join(p)) for p in pieces]
        hyps = in_batches(ids, search, batches_at_once)
        return [[tgt.symbols[t] for t in hyp] for hyp in hyps]

    def finish():
        if workers is None:
            return 0.0, 0.0
        return sum(workers.close()), sum(workers.cpu_seconds)

    translate.limits = limits  # held while the translator lives
    translate.finish = finish
    return translate


RUNNERS = {"ct2": ct2_translator, "lite": lite_translator}


def child(spec: dict) -> dict:
    """One configuration: translate, write the hypotheses, report time and memory."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=spec["spm"])
    lines = Path(spec["source"]).read_text(encoding="utf-8").splitlines()
    pieces = [sp.encode(line, out_type=str) for line in lines[: spec["sentences"]]]
    make = RUNNERS.get(spec["runner"], torch_translator)
    translate = make(spec)
    translate(pieces[:WARMUP])
    cpu, start = cpu_seconds(), time.perf_counter()
    out = translate(pieces)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    # worker processes (delight-lite-workers): their peak memory and CPU time
    peaks, worker_cpu = getattr(translate, "finish", lambda: (0.0, 0.0))()
    hyps = [sp.decode(p) for p in out]
    Path(spec["hyps"]).write_text("\n".join(hyps) + "\n", encoding="utf-8")
    return {
        "seconds": seconds,
        "cpu_seconds": cpu + worker_cpu,
        "target_tokens": sum(len(p) for p in out),
        "peak_rss_mib": peak_rss_mib() + peaks,  # with workers', summed
    }


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
