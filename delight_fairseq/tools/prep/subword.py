"""Joint subword models: subword-nmt BPE and sentencepiece, learned and applied.

subword-nmt is what fairseq's recipes run (``learn_bpe.py -s N`` on the
concatenated training sides, ``apply_bpe.py -c code``, ``@@ `` separators), and
only it reproduces their vocabularies: the 10k merges of IWSLT'14 and the 40k
of WMT'14, whose joined dictionaries (about 43.7k entries for En-De and 44.5k
for En-Fr) are behind the authors' published parameter totals. sentencepiece
is used where no reference recipe pins the tool (WMT'16 En-Ro, Multi30k); it
works on raw text and ``fairseq-generate --post-process sentencepiece``
undoes it.
"""

import functools
import logging
import tempfile
from pathlib import Path
from typing import Sequence

import sentencepiece as spm
from subword_nmt.apply_bpe import BPE
from subword_nmt.learn_bpe import learn_bpe as _learn_bpe

from .corpus import iter_lines

logger = logging.getLogger(__name__)


def _concat(files: Sequence[Path], dest: Path) -> None:
    with open(dest, "w", encoding="utf-8", newline="\n") as out:
        for path in files:
            for line in iter_lines(path):
                out.write(line + "\n")


def learn_bpe(
    train: Sequence[Path], codes: Path, merges: int, workers: int = 1
) -> None:
    """``cat TRAIN... | learn_bpe.py -s MERGES > CODES`` (min frequency 2)."""
    with tempfile.TemporaryDirectory(dir=codes.parent) as tmp:
        joint = Path(tmp) / "train.joint"
        _concat(train, joint)
        logger.info("learning %d BPE merges on %s", merges, " + ".join(map(str, train)))
        with (
            open(joint, encoding="utf-8", newline="\n") as fin,
            open(codes, "w", encoding="utf-8", newline="\n") as fout,
        ):
            _learn_bpe(fin, fout, merges, min_frequency=2, num_workers=workers)


@functools.lru_cache(maxsize=4)
def _bpe(codes: str) -> BPE:
    with open(codes, encoding="utf-8") as f:
        return BPE(f)


def bpe_line(codes: str, line: str) -> str:
    """``apply_bpe.py -c CODES`` on one line (use with ``functools.partial``)."""
    return _bpe(codes).process_line(line)


def train_sentencepiece(
    train: Sequence[Path],
    model_prefix: Path,
    vocab_size: int,
    model_type: str = "bpe",
    threads: int = 1,
) -> Path:
    """A joint sentencepiece model on the training sides; returns the ``.model`` path.

    No ``<s>``/``</s>`` pieces (fairseq's dictionary adds its own), full
    character coverage, and a soft vocabulary limit so that a small corpus
    gets fewer pieces instead of an error."""
    logger.info(
        "learning a %d-piece sentencepiece %s model on %s",
        vocab_size,
        model_type,
        " + ".join(map(str, train)),
    )
    spm.SentencePieceTrainer.train(
        input=[str(p) for p in train],
        model_prefix=str(model_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        hard_vocab_limit=False,
        input_sentence_size=4_000_000,
        shuffle_input_sentence=True,
        num_threads=max(1, threads),
        minloglevel=2,
    )
    return Path(f"{model_prefix}.model")


@functools.lru_cache(maxsize=4)
def _spm(model: str) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=model)


def spm_line(model: str, line: str) -> str:
    """Encode one line into space-separated pieces; an empty line stays empty."""
    return " ".join(_spm(model).encode(line, out_type=str))
