"""The official corpora of each benchmark: file names, archive layouts, URLs.

The URLs are those of fairseq's ``prepare-iwslt14.sh``,
``prepare-wmt14en2de.sh`` (with ``--icml17``: News Commentary v9, as the
authors used) and ``prepare-wmt14en2fr.sh``, of the WMT'16 news task
(Europarl v8, dev and test sets) and OPUS (SETimes2), and of the Multi30k
repository. Each :class:`~.sources.Part` also names its plain-text copy
(``<raw>/<plain>.<lang>``), so a folder of plain files works too, such as
the project's ``shared/data``.
"""

from typing import Dict, List

from .sources import Part

IWSLT14_URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"


def _iwslt14(name: str, xml: bool) -> Part:
    suffix = ".xml" if xml else ""
    return Part(
        name,
        {lang: f"de-en/{name}.{lang}{suffix}" for lang in ("de", "en")},
        "de-en.tgz",
        IWSLT14_URL,
    )


IWSLT14_TRAIN = _iwslt14("train.tags.de-en", xml=False)
# prepare-iwslt14.sh concatenates its test set in this order
IWSLT14_TEST = [
    _iwslt14(f"IWSLT14.{name}.de-en", xml=True)
    for name in (
        "TED.dev2010",
        "TEDX.dev2012",
        "TED.tst2010",
        "TED.tst2011",
        "TED.tst2012",
    )
]

_STATMT = "http://statmt.org"


def wmt14_train(other: str) -> List[Part]:
    """fairseq's training corpora for English-``other`` (``de`` or ``fr``), in its order."""
    pair = f"{other}-en"
    langs = ("en", other)
    europarl = Part(
        f"europarl-v7.{pair}",
        {lang: f"training/europarl-v7.{pair}.{lang}" for lang in langs},
        "training-parallel-europarl-v7.tgz",
        f"{_STATMT}/wmt13/training-parallel-europarl-v7.tgz",
    )
    commoncrawl = Part(
        f"commoncrawl.{pair}",
        {lang: f"commoncrawl.{pair}.{lang}" for lang in langs},
        "training-parallel-commoncrawl.tgz",
        f"{_STATMT}/wmt13/training-parallel-commoncrawl.tgz",
    )
    news = Part(
        f"news-commentary-v9.{pair}",
        {lang: f"training/news-commentary-v9.{pair}.{lang}" for lang in langs},
        "training-parallel-nc-v9.tgz",
        f"{_STATMT}/wmt14/training-parallel-nc-v9.tgz",
    )
    if other == "de":
        return [europarl, commoncrawl, news]
    un = Part(
        "undoc.2000.fr-en",
        {lang: f"un/undoc.2000.fr-en.{lang}" for lang in langs},
        "training-parallel-un.tgz",
        f"{_STATMT}/wmt13/training-parallel-un.tgz",
    )
    giga = Part(
        "giga-fren.release2.fixed",
        {lang: f"giga-fren.release2.fixed.{lang}.gz" for lang in langs},
        "training-giga-fren.tar",
        f"{_STATMT}/wmt10/training-giga-fren.tar",
    )
    return [europarl, commoncrawl, un, news, giga]


def wmt14_test(other: str) -> Part:
    """newstest2014 ("full"), English source, ``other`` reference."""
    name = f"newstest2014-{other}en"
    return Part(
        name,
        {
            "en": f"test-full/{name}-src.en.sgm",
            other: f"test-full/{name}-ref.{other}.sgm",
        },
        "test-full.tgz",
        f"{_STATMT}/wmt14/test-full.tgz",
    )


_WMT16 = "http://data.statmt.org/wmt16/translation-task"

WMT16_EN_RO_TRAIN = [
    Part(
        "europarl-v8.ro-en",
        {
            lang: f"training-parallel-ep-v8/europarl-v8.ro-en.{lang}"
            for lang in ("en", "ro")
        },
        "training-parallel-ep-v8.tgz",
        f"{_WMT16}/training-parallel-ep-v8.tgz",
    ),
    Part(
        "SETIMES.en-ro",
        {lang: f"SETIMES.en-ro.{lang}" for lang in ("en", "ro")},
        "en-ro.txt.zip",
        "https://object.pouta.csc.fi/OPUS-SETIMES/v2/moses/en-ro.txt.zip",
    ),
]


def _wmt16(name: str, folder: str) -> Part:
    return Part(
        name,
        {
            "en": f"{folder}/{name}-enro-src.en.sgm",
            "ro": f"{folder}/{name}-enro-ref.ro.sgm",
        },
        f"{folder}.tgz",
        f"{_WMT16}/{folder}.tgz",
    )


WMT16_EN_RO_VALID = _wmt16("newsdev2016", "dev")
WMT16_EN_RO_TEST = _wmt16("newstest2016", "test")

MULTI30K_URL = (
    "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
)


def multi30k(split: str) -> Part:
    """A Multi30k task-1 split (``train``, ``val``, ``test_2016_flickr``): one
    gzipped file per language."""
    return Part(
        split, {}, f"{split}.{{lang}}.gz", f"{MULTI30K_URL}/{split}.{{lang}}.gz"
    )


MULTI30K: Dict[str, Part] = {
    "train": multi30k("train"),
    "valid": multi30k("val"),
    "test": multi30k("test_2016_flickr"),
}
