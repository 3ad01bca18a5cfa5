"""In-process BLEU of one Multi30k checkpoint: beam search on a binarized split,
sacreBLEU against the raw reference, and the length penalty that is best on
validation. Shared by tune.py and curves.py.

    scorer = Scorer(Path("checkpoint_last.pt"))
    scorer.bleu("valid", lenpen=1.0)      # {"bleu", "bp", "sentences_per_s", ...}
    scorer.tune_lenpen()                  # the best of multi30k.LENPENS on validation
"""

import time
from pathlib import Path
from typing import List

from multi30k import DATA_BIN, LENPENS, RAW, REFERENCES


class Scorer:
    """Beam search on a binarized split inside this process, sacreBLEU against the
    raw reference. One instance per checkpoint: the model loads once."""

    def __init__(self, checkpoint: Path, data: Path = DATA_BIN):
        import torch
        from fairseq import checkpoint_utils

        import delight_fairseq  # noqa: F401  (the plugin, before the checkpoint loads)

        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        extra = state.get("extra_state") or {}
        self.updates = int(state["optimizer_history"][-1]["num_updates"])
        self.train_minutes = round(extra.get("previous_training_time", 0.0) / 60, 2)
        del state
        models, _, self.task = checkpoint_utils.load_model_ensemble_and_task(
            [str(checkpoint)], arg_overrides={"data": str(data)}
        )
        self.models = [m.eval() for m in models]

    def translate(self, split: str, lenpen: float, beam: int = 5) -> List[str]:
        import torch
        from fairseq.dataclass.configs import GenerationConfig

        task = self.task
        if split not in task.datasets:
            task.load_dataset(split)
        generator = task.build_generator(
            self.models, GenerationConfig(beam=beam, lenpen=lenpen)
        )
        batches = task.get_batch_iterator(
            dataset=task.dataset(split), max_tokens=6000, ignore_invalid_inputs=False
        ).next_epoch_itr(shuffle=False)
        out = {}
        with torch.no_grad():
            for sample in batches:
                hypos = task.inference_step(generator, self.models, sample)
                for sid, nbest in zip(sample["id"].tolist(), hypos):
                    out[sid] = task.target_dictionary.string(
                        nbest[0]["tokens"].int(), "sentencepiece"
                    )
        return [out[i] for i in range(len(out))]

    def bleu(self, split: str, lenpen: float) -> dict:
        import sacrebleu

        start = time.time()
        hyps = self.translate(split, lenpen)
        seconds = time.time() - start
        refs = (RAW / REFERENCES[split]).read_text(encoding="utf-8").splitlines()
        if len(refs) != len(hyps):
            raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
        score = sacrebleu.corpus_bleu(hyps, [refs])
        return {
            "split": split,
            "lenpen": lenpen,
            "bleu": round(score.score, 2),
            "bp": round(score.bp, 3),
            "sentences_per_s": round(len(hyps) / seconds, 1),
        }

    def tune_lenpen(self, lenpens=LENPENS) -> dict:
        """The validation BLEU at each length penalty, and the best one."""
        trials = [self.bleu("valid", lp) for lp in lenpens]
        best = max(trials, key=lambda t: t["bleu"])
        return {"lenpen": best["lenpen"], "valid": best, "trials": trials}
