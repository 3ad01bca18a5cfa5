"""delight-translate's subword codecs as a checkpoint's data-bin records them:
subword-nmt BPE with Moses tokenization, as prep.json gives the test-set steps, and a
sentencepiece model found in the data-bin, whose translations equal the pieces run
through the engine by hand and fairseq's SequenceGenerator (--fp32-reference); and
delight-lite on both, from what delight-export copied."""

import pytest
import torch

from delight_fairseq.inference import translate as tr
from delight_lite.text import build_codec, read_prep_settings

from translate_helpers import eager_glt, save_checkpoint, synthetic_pairs  # noqa: F401


def test_subword_nmt_and_moses_as_prep_recorded(tmp_path):
    """A data-bin with BPE codes and prep.json: the source goes through the
    recorded test-set steps (here tokenize + lowercase) and the BPE; the target
    is joined and detokenized."""
    import json

    (tmp_path / "code").write_text("#version: 0.2\nh e\nhe l\n", encoding="utf-8")
    steps = {"lang": "en", "tokenize": True, "lowercase": True}
    prep = {"fingerprint": {"direction": "en-de", "settings": {
        "bpe_merges": 2, "test_steps": {"en": steps, "de": {**steps, "lang": "de"}}}}}  # fmt: skip
    (tmp_path / "prep.json").write_text(json.dumps(prep), encoding="utf-8")
    settings = read_prep_settings(tmp_path)
    codec = build_codec("en", "de", [tmp_path], prep_settings=settings)
    assert codec.kind == "subword_nmt" and codec.detokenize == "de"
    assert codec.encode("Hello, HE") == "hel@@ l@@ o , h@@ e"
    from fairseq.data.data_utils import post_process

    assert codec.decode(
        post_process("ha@@ us , &quot; da@@ s &quot;", "subword_nmt")
    ) == ('haus, "das"')
    # without prep.json: Moses tokenization, as fairseq's recipes do
    (tmp_path / "prep.json").unlink()
    codec = build_codec("en", "de", [tmp_path], prep_settings=None)
    assert codec.encode("Hello, he") == "H@@ e@@ l@@ l@@ o , h@@ e"  # not lowercased
    assert (
        build_codec("en", "de", [tmp_path], tokenizer="none").encode("a,b")
        == "a@@ ,@@ b"
    )


@pytest.fixture(scope="module")
def pieces(tmp_path_factory):
    """A model on a tiny sentencepiece model, with spm.model in its data-bin."""
    from delight_fairseq.tools.prep.subword import spm_line, train_sentencepiece
    from delight_fairseq.tools.synthetic import write_corpus

    work = tmp_path_factory.mktemp("spm")
    raw = write_corpus(work / "raw", 1000, 0, 0, seed=13)
    model = train_sentencepiece(
        [raw / "train.src", raw / "train.tgt"], work / "spm", 60, "unigram"
    )
    pairs = [
        (spm_line(str(model), s), spm_line(str(model), t))
        for s, t in synthetic_pairs(2000, seed=1)
    ]
    ckpt, data = save_checkpoint(work, pairs, steps=80)
    (data / "spm.model").write_bytes(model.read_bytes())
    return ckpt, data


def test_sentencepiece_from_the_data_bin(pieces):
    from fairseq.data.data_utils import post_process

    ckpt, data = pieces
    sources = [s for s, _ in synthetic_pairs(8, seed=7)] + [""]
    t = tr.Translator(ckpt, beam=5)  # data-bin and spm.model found by themselves
    assert t.codec.kind == "sentencepiece" and t.codec.model == data / "spm.model"
    out = t.translate(sources)
    assert len(out) == len(sources) and out[-1] == ""
    assert all(o and "\u2581" not in o for o in out[:-1])
    # by hand: pieces -> ids -> the engine -> pieces joined
    for src, got in zip(sources[:3], out):
        pieces_in = t.codec.encode(src)
        assert " " in pieces_in.replace("\u2581", "")  # split into pieces
        ids = t.src_dict.encode_line(pieces_in, add_if_not_exist=False)
        hyp = t.engine.translate(ids.unsqueeze(0), torch.tensor([ids.numel()]))[0]
        assert got == post_process(t.tgt_dict.string(hyp), "sentencepiece")
    reference = tr.Translator(ckpt, beam=5, fp32_reference=True)
    assert reference.translate(sources) == out


def test_delight_lite_takes_the_subword_model_along(pieces, tmp_path):
    """delight-export copies the data-bin's spm.model; delight-lite finds it in
    the exported folder and translates as delight-translate does."""
    from delight_fairseq.inference.export import export_checkpoint
    from delight_lite.translate import LiteTranslator

    ckpt, data = pieces
    out = export_checkpoint(ckpt, tmp_path / "lite")
    assert (out / "spm.model").read_bytes() == (data / "spm.model").read_bytes()
    sources = [s for s, _ in synthetic_pairs(8, seed=7)] + [""]
    lite = LiteTranslator(out, beam=5, threads=1)
    assert lite.codec.kind == "sentencepiece"
    assert lite.translate(sources) == tr.Translator(ckpt, beam=5).translate(sources)


def test_delight_lite_takes_bpe_codes_and_moses_steps_along(tmp_path):
    """subword-nmt codes and prep.json's Moses steps (tokenize, lowercase) go
    with the export: delight-lite encodes and detokenizes as delight-translate."""
    import json
    import shutil

    from delight_fairseq.inference.export import export_checkpoint
    from delight_lite.translate import LiteTranslator

    ckpt, data = save_checkpoint(tmp_path, synthetic_pairs(500, seed=1), steps=20)
    bpe_bin = tmp_path / "bpe-bin"
    shutil.copytree(data, bpe_bin)
    (bpe_bin / "code").write_text("#version: 0.2\nh e\nhe l\n", encoding="utf-8")
    steps = {"tokenize": True, "lowercase": True}
    prep = {"fingerprint": {"direction": "src-tgt", "settings": {"test_steps": {
        "src": {**steps, "lang": "en"}, "tgt": {**steps, "lang": "en"}}}}}  # fmt: skip
    (bpe_bin / "prep.json").write_text(json.dumps(prep), encoding="utf-8")
    out = export_checkpoint(ckpt, tmp_path / "lite", data=bpe_bin)
    lite = LiteTranslator(out, beam=2, threads=1)
    torch_side = tr.Translator(ckpt, bpe_bin, beam=2)
    # the same codec, its codes read from the exported folder
    expected = torch_side.codec.describe().replace(str(bpe_bin), str(out))
    assert lite.codec.describe() == expected
    assert lite.codec.kind == "subword_nmt" and lite.codec.detokenize == "tgt"
    sources = [s + ", HELLO." for s, _ in synthetic_pairs(6, seed=7)]
    assert lite.translate(sources) == torch_side.translate(sources)
