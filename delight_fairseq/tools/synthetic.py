"""A tiny synthetic translation task, for the offline demo and the CLI tests.

The "source language" draws words from a small vocabulary; the "target
language" maps each word to its own translation and swaps every adjacent
adjective-noun pair, so a model must learn both a lexicon and a little
reordering. Everything is deterministic given the seed.

    python -m delight_fairseq.tools.synthetic OUT_DIR [--train 2000 --valid 200 --test 200]

writes OUT_DIR/{train,valid,test}.{src,tgt}.
"""

import argparse
import random
from pathlib import Path
from typing import List, Tuple

NOUNS = [
    "hund",
    "katze",
    "mann",
    "frau",
    "kind",
    "haus",
    "baum",
    "ball",
    "auto",
    "boot",
]
ADJECTIVES = ["rot", "gross", "klein", "alt", "jung", "blau"]
VERBS = ["sieht", "hat", "mag", "holt", "baut"]
LEXICON = {
    **dict(
        zip(
            NOUNS,
            [
                "dog",
                "cat",
                "man",
                "woman",
                "child",
                "house",
                "tree",
                "ball",
                "car",
                "boat",
            ],
        )
    ),
    **dict(zip(ADJECTIVES, ["red", "big", "small", "old", "young", "blue"])),
    **dict(zip(VERBS, ["sees", "has", "likes", "fetches", "builds"])),
    "der": "the",
    "ein": "a",
    "und": "and",
}


def _phrase(rng: random.Random) -> List[str]:
    words = [rng.choice(["der", "ein"])]
    if rng.random() < 0.6:
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    return words


def sentence_pair(rng: random.Random) -> Tuple[str, str]:
    src = _phrase(rng) + [rng.choice(VERBS)] + _phrase(rng)
    if rng.random() < 0.3:
        src += ["und"] + _phrase(rng)
    tgt = [LEXICON[w] for w in src]
    # the target puts adjectives after nouns: "ein rot ball" -> "a ball red"
    i = 0
    while i < len(src) - 1:
        if src[i] in ADJECTIVES and src[i + 1] in NOUNS:
            tgt[i], tgt[i + 1] = tgt[i + 1], tgt[i]
            i += 2
        else:
            i += 1
    return " ".join(src), " ".join(tgt)


def write_corpus(out_dir, n_train=2000, n_valid=200, n_test=200, seed=1) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        pairs = [sentence_pair(rng) for _ in range(n)]
        for side, index in (("src", 0), ("tgt", 1)):
            text = "\n".join(p[index] for p in pairs) + "\n"
            (out / f"{split}.{side}").write_text(text, encoding="utf-8")
    return out


def main():
    parser = argparse.ArgumentParser(description="write the synthetic toy corpus")
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write_corpus(args.out_dir, args.train, args.valid, args.test, args.seed)


if __name__ == "__main__":
    main()
