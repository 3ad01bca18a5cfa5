"""One function per corpus family: raw corpora -> text -> subwords -> ``data-bin/<name>``.

Each takes the catalog's record (``delight_fairseq/catalog.py``), whose
``prep`` field names the function, and builds the record's direction under
the record's name.

Each returns a :class:`~.pipeline.Result`; a second run with the same
settings and inputs finds the stamp and skips the work. The prepared text
stays in ``<workdir>/text``: ``pre/`` before subwords (Moses-tokenized where
the recipe tokenizes), then ``{train,valid,test}.<lang>`` as binarized, and
the subword model.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Tuple

from delight_lite.moses import MosesSteps

from ...catalog import Benchmark
from . import releases
from .corpus import DataError
from .pipeline import Options, Result, Run, plain_parts
from .sources import Part, iwslt_tags


def _parts(opts: Options, defaults: Dict[str, List[Part]]) -> Dict[str, List[Part]]:
    """The release's corpora per split, or the user's plain-text overrides."""
    parts = dict(defaults)
    for split in ("train", "valid", "test"):
        override = getattr(opts, split)
        if override:
            if split not in parts:
                raise DataError(
                    f"--{split}: this recipe makes its {split} set from the training "
                    "data, as the paper's does; drop the option"
                )
            parts[split] = plain_parts(
                [override] if isinstance(override, str) else override
            )
    return parts


def iwslt14(opts: Options, bench: Benchmark) -> Result:
    """IWSLT'14 German-English (either direction) as fairseq's ``prepare-iwslt14.sh``.

    From ``de-en.tgz`` (or its extracted ``de-en/`` folder): the tag lines of
    ``train.tags.de-en.*`` removed; Moses tokenization (``-l de``/``-l en``, no
    ``-a``); clean-corpus-n on train with ratio 1.5 and 1..175 words;
    lowercasing; valid = every 23rd training line, train = the rest; test =
    TED.dev2010, TEDX.dev2012, TED.tst2010, tst2011, tst2012 concatenated in
    that order (6,750 pairs); 10,000 joint BPE merges with subword-nmt (as
    fairseq's script, so the vocabulary matches). Separate dictionaries: the
    IWSLT presets tie only the decoder's input and output embeddings.
    """
    src, tgt = _direction(bench, {"de", "en"})
    # lowercasing before cleaning instead of after changes nothing: it keeps
    # every space, so word counts and ratios are the same
    train_steps = _steps(src, tgt, lowercase=True)
    test_steps = _steps(src, tgt, apostrophe=True, lowercase=True)
    clean, every = {"max_len": 175, "ratio": 1.5}, 23
    merges = opts.subwords or 10_000
    defaults = {"train": [releases.IWSLT14_TRAIN], "test": releases.IWSLT14_TEST}
    settings = _settings(opts, train_steps, test_steps, clean, every, bpe_merges=merges)
    run = Run(bench.name, opts, src, tgt, _parts(opts, defaults), settings)
    if run.up_to_date():
        return run.skipped()
    with run.staged_text() as text:
        tmp, pre = _folders(text)
        run.process("train", tmp / "train.tags.tok", train_steps, pre=iwslt_tags)
        run.clean(tmp / "train.tags.tok", tmp / "train.tags", "train", **clean)
        run.split_every(tmp / "train.tags", every, pre / "valid", pre / "train")
        run.process("test", pre / "test", test_steps)
        codes = run.bpe(pre, text, merges)
    return run.binarize(joined=False, extra=[codes])


def wmt14(opts: Options, bench: Benchmark) -> Result:
    """WMT'14 English->German or English->French as
    fairseq's ``prepare-wmt14en2de.sh --icml17`` / ``prepare-wmt14en2fr.sh``.

    Training corpora: Europarl v7, CommonCrawl, News Commentary v9 (+ UN and
    Gigaword for French), each through normalize-punctuation,
    remove-non-printing-char and Moses tokenization with ``-a``; valid = every
    100th line (En-Fr: 1333rd) of their concatenation, train = the rest; test =
    newstest2014 ("full"), tokenized with ``-a``; 40,000 joint BPE merges with
    subword-nmt, the only tool that reproduces the authors' joined
    dictionaries (43.7k / 44.5k entries); then clean-corpus-n on train and
    valid after BPE, ratio 1.5 and 1..250 tokens. One joined dictionary, for
    ``--share-all-embeddings``.
    """
    if bench.source != "en" or bench.target not in ("de", "fr"):
        raise ValueError(
            f"{bench.name}: WMT'14 is prepared English->German or English->French, "
            f"not {bench.source}->{bench.target}"
        )
    src, other = "en", bench.target
    tgt = other
    train_steps = _steps(
        src, tgt, normalize_punct=True, remove_non_printing=True, aggressive_dashes=True
    )
    test_steps = _steps(src, tgt, apostrophe=True, aggressive_dashes=True)
    clean, every = {"max_len": 250, "ratio": 1.5}, 100 if other == "de" else 1333
    merges = opts.subwords or 40_000
    defaults = {
        "train": releases.wmt14_train(other),
        "test": [releases.wmt14_test(other)],
    }
    settings = _settings(opts, train_steps, test_steps, clean, every, bpe_merges=merges)
    run = Run(bench.name, opts, src, tgt, _parts(opts, defaults), settings)
    if run.up_to_date():
        return run.skipped()
    with run.staged_text() as text:
        tmp, pre = _folders(text)
        run.process("train", tmp / "train.tags.tok", train_steps)
        run.split_every(tmp / "train.tags.tok", every, pre / "valid", pre / "train")
        run.process("test", pre / "test", test_steps)
        codes = run.bpe(pre, tmp, merges)  # into tmp/: cleaned after BPE
        for split in ("train", "valid"):
            run.clean(tmp / split, text / split, split, **clean)
        for path in [*run.pair(tmp / "test"), codes]:
            path.rename(text / path.name)
    return run.binarize(joined=True, extra=[text / codes.name])


def wmt16(opts: Options, bench: Benchmark) -> Result:
    """WMT'16 English-Romanian (either direction): Europarl v8 + SETimes2 (about 610k pairs),
    newsdev2016 valid, newstest2016 test.

    Every side through normalize-punctuation and remove-non-printing-char,
    and Romanian's cedilla letters turned into comma-below ones (Ş -> Ș,
    Ţ -> Ț: Europarl has the former, the test sets the latter); train cleaned
    as the WMT'16 scripts' ``preprocess.sh`` does (clean-corpus-n, 1..80
    words, its default ratio 9); then a joint sentencepiece BPE model of
    35,000 pieces on this untokenized text, which gives a joined dictionary of
    about the authors' 35.0k entries. No Moses tokenization:
    ``fairseq-generate --post-process sentencepiece`` gives detokenized output
    for sacreBLEU against the raw references. The paper does not publish its
    En-Ro subword recipe, so the vocabulary is close to, not the same as, the
    authors'.
    """
    src, tgt = _direction(bench, {"en", "ro"})
    steps = {
        lang: MosesSteps(
            lang,
            normalize_punct=True,
            remove_non_printing=True,
            tokenize=False,
            romanian_commas=lang == "ro",
        )
        for lang in (src, tgt)
    }
    clean = {"max_len": 80, "ratio": 9.0}
    size = opts.subwords or 35_000
    defaults = {
        "train": releases.WMT16_EN_RO_TRAIN,
        "valid": [releases.WMT16_EN_RO_VALID],
        "test": [releases.WMT16_EN_RO_TEST],
    }
    settings = _settings(opts, steps, steps, clean, None, spm_bpe_pieces=size)
    run = Run(bench.name, opts, src, tgt, _parts(opts, defaults), settings)
    if run.up_to_date():
        return run.skipped()
    with run.staged_text() as text:
        tmp, pre = _folders(text)
        run.process("train", tmp / "train", steps)
        run.clean(tmp / "train", pre / "train", "train", **clean)
        for split in ("valid", "test"):
            run.process(split, pre / split, steps)
        model = run.sentencepiece(pre, text, size, "bpe")
    return run.binarize(joined=True, extra=[model])


MULTI30K_LANGS = {"de", "en", "fr"}


def multi30k(opts: Options, bench: Benchmark) -> Result:
    """Multi30k task 1 (any direction between de, en and fr): train 29,000, val
    1,014, test_2016_flickr 1,000 pairs, raw; a joint sentencepiece unigram model
    of 6,000 pieces on the raw training sides; nothing removed or tokenized. One
    joined dictionary, for ``--share-all-embeddings``.
    """
    src, tgt = _direction(bench, MULTI30K_LANGS)
    size = opts.subwords or 6_000
    defaults = {split: [part] for split, part in releases.MULTI30K.items()}
    settings = _settings(opts, None, None, None, None, spm_unigram_pieces=size)
    run = Run(bench.name, opts, src, tgt, _parts(opts, defaults), settings)
    if run.up_to_date():
        return run.skipped()
    with run.staged_text() as text:
        _, pre = _folders(text)
        for split in ("train", "valid", "test"):
            run.process(split, pre / split, {src: None, tgt: None})
        model = run.sentencepiece(pre, text, size, "unigram")
    return run.binarize(joined=True, extra=[model])


def _direction(bench: Benchmark, langs) -> Tuple[str, str]:
    """The record's (source, target), checked against the corpus's languages."""
    if {bench.source, bench.target} - set(langs) or bench.source == bench.target:
        raise ValueError(
            f"{bench.name}: {bench.source}->{bench.target} is not a direction of this "
            f"corpus ({', '.join(sorted(langs))})"
        )
    return bench.source, bench.target


def _steps(src: str, tgt: str, **flags) -> Dict[str, MosesSteps]:
    return {lang: MosesSteps(lang, **flags) for lang in (src, tgt)}


def _settings(opts: Options, train_steps, test_steps, clean, every, **subwords) -> dict:
    """Everything that decides a recipe's output, for the stamp."""

    def steps(s):
        return {lang: asdict(v) for lang, v in s.items()} if s else None

    return {
        **subwords,
        "train_steps": steps(train_steps),
        "test_steps": steps(test_steps),
        "clean": clean,
        "valid_every": every,
        "train": list(opts.train),
        "valid": opts.valid,
        "test": opts.test,
    }


def _folders(text: Path) -> Tuple[Path, Path]:
    """``tmp/`` for intermediate files, ``pre/`` for the text before subwords."""
    tmp, pre = text / "tmp", text / "pre"
    tmp.mkdir()
    pre.mkdir()
    return tmp, pre
