"""A trained checkpoint directory loads with one call and translates raw text,
with sentencepiece encoding and decoding from the model saved beside it."""

import shutil

import pytest

from delight_fairseq import DeLighTTransformerModel
from delight_fairseq.tools.prep.subword import spm_line, train_sentencepiece
from delight_fairseq.tools.synthetic import write_corpus

from helpers import NO_DROPOUT, TINY_MODEL, TRAIN, USER_DIR, preprocess, run_cli

# end to end: fairseq's CLIs, processes or real corpora (scripts/test.sh -m 'not slow' skips)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("hub")
    raw = write_corpus(work / "raw", 1000, 60, 0, seed=13)
    model = train_sentencepiece(
        [raw / "train.src", raw / "train.tgt"], work / "spm", 60, "unigram"
    )
    pieces = work / "pieces"
    pieces.mkdir()
    for split in ("train", "valid"):
        for side in ("src", "tgt"):
            lines = (raw / f"{split}.{side}").read_text().splitlines()
            encoded = [spm_line(str(model), line) for line in lines]
            (pieces / f"{split}.{side}").write_text("\n".join(encoded) + "\n")
    data = preprocess(pieces, work / "bin")
    ckpt = work / "checkpoints"
    run_cli(
        "fairseq-train",
        data,
        "--user-dir",
        USER_DIR,
        *TINY_MODEL,
        *NO_DROPOUT,
        *TRAIN,
        "--save-dir",
        ckpt,
        "--max-update",
        "200",
    )
    shutil.copy(work / "spm.model", ckpt / "spm.model")
    return ckpt, data


def test_from_pretrained_translates_raw_sentences(checkpoint_dir):
    ckpt, data = checkpoint_dir
    hub = DeLighTTransformerModel.from_pretrained(
        str(ckpt),
        checkpoint_file="checkpoint_best.pt",
        data_name_or_path=str(data),
        bpe="sentencepiece",
        sentencepiece_model=str(ckpt / "spm.model"),
    )
    # the subword split is real: the hub encodes into pieces and decodes back
    assert " " in hub.apply_bpe("ein mann mag der auto").replace("▁", "")
    assert hub.translate("ein mann mag der auto", beam=5) == "a man likes the car"
    assert hub.translate(["der alt hund hat ein ball", "ein kind sieht der baum"]) == [
        "the dog old has a ball",
        "a child sees the tree",
    ]
