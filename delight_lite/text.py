"""Raw text <-> the token strings of a model's dictionaries, the way ``delight-prep``
made the training data (used by :mod:`delight_fairseq.inference.translate`).

A data-bin made by ``delight-prep`` holds its subword model (``spm.model`` for
sentencepiece, ``code`` for subword-nmt BPE) and ``prep.json``, whose
fingerprint records the Moses steps the test sets went through, per language
(``settings.test_steps``). The source side of a translation goes through the
same steps and the same subword model; the target side has its subwords joined
and, where the recipe Moses-tokenized it, is detokenized. What cannot be undone
(lowercasing, punctuation normalisation) stays as the model produces it.

Without ``prep.json`` (a data-bin made by hand), subword-nmt codes imply
fairseq's recipes' Moses tokenization (``tokenizer.perl -l LANG``) and
sentencepiece implies raw text; ``tokenizer`` overrides either.
"""

import json
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

logger = logging.getLogger(__name__)

SPM_MODEL = "spm.model"
BPE_CODES = "code"
PREP_STAMP = "prep.json"
KINDS = ("auto", "sentencepiece", "subword_nmt", "none")
TOKENIZERS = ("auto", "moses", "none")


REPLACEMENT = "\ufffd"

Line = Union[str, bytes]


def as_text(item: Line) -> Tuple[str, bool]:
    """A line as text without its line ending, and whether it had to be repaired:
    invalid UTF-8 (bytes) or lone surrogates (str) become U+FFFD."""
    invalid = False
    if isinstance(item, (bytes, bytearray)):
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError:
            text = item.decode("utf-8", errors="replace")
            invalid = True
    else:
        text = str(item)
        if any("\ud800" <= c <= "\udfff" for c in text):
            text = "".join(
                REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text
            )
            invalid = True
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text, invalid


class TextSetupError(ValueError):
    """The subword model or the tokenizer cannot be set up; the message says why."""


def read_prep_settings(data: Optional[Path]) -> Optional[dict]:
    """The recipe's settings recorded by ``delight-prep`` in ``data/prep.json``."""
    if data is None:
        return None
    try:
        stamp = json.loads((Path(data) / PREP_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    fingerprint = stamp.get("fingerprint") or {}
    settings = dict(fingerprint.get("settings") or {})
    if "direction" in fingerprint:
        settings["direction"] = fingerprint["direction"]
    return settings


def _moses_steps(settings: Optional[dict], lang: str):
    """``MosesSteps`` for ``lang`` as the recipe ran them on its test sets, or None
    when the recipe ran none (or recorded nothing for ``lang``)."""
    from .moses import MosesSteps

    recorded = ((settings or {}).get("test_steps") or {}).get(lang)
    if not recorded:
        return None
    known = {f.name for f in fields(MosesSteps)}
    return MosesSteps(**{k: v for k, v in recorded.items() if k in known})


def _describe_steps(steps) -> str:
    names = [
        f.name
        for f in fields(steps)
        if f.name != "lang" and getattr(steps, f.name) is True
    ]
    return f"{steps.lang}: " + (", ".join(names) if names else "nothing")


@dataclass
class TextCodec:
    """Raw source text -> the token string the source dictionary encodes, and the
    target dictionary's token string (subwords still split) -> text.

    Attributes:
        kind: ``sentencepiece``, ``subword_nmt`` or ``none`` (whitespace only).
        model: the sentencepiece model or the BPE codes (None for ``none``).
        source_steps: applied to each source line before the subwords (the
            recipe's Moses steps), or None.
        detokenize: the target language to Moses-detokenize, or None.
    """

    kind: str = "none"
    model: Optional[Path] = None
    source_steps: Optional[Callable[[str], str]] = None
    detokenize: Optional[str] = None

    def __post_init__(self):
        self._split = self._load_subwords()
        self._detok = None
        if self.detokenize:
            from sacremoses import MosesDetokenizer

            self._detok = MosesDetokenizer(lang=self.detokenize)

    def _load_subwords(self) -> Callable[[str], str]:
        if self.kind == "sentencepiece":
            import sentencepiece as spm

            sp = spm.SentencePieceProcessor(model_file=str(self.model))
            return lambda line: " ".join(sp.encode(line, out_type=str))
        if self.kind == "subword_nmt":
            from subword_nmt.apply_bpe import BPE

            with open(self.model, encoding="utf-8") as f:
                bpe = BPE(f)
            return bpe.process_line
        if self.kind == "none":
            return lambda line: line
        raise TextSetupError(f"unknown subword kind {self.kind!r}")

    @property
    def post_process(self) -> Optional[str]:
        """fairseq's ``--post-process`` symbol that joins this kind's subwords."""
        return {"sentencepiece": "sentencepiece", "subword_nmt": "subword_nmt"}.get(
            self.kind
        )

    def encode(self, line: str) -> str:
        """One raw source line -> space-separated dictionary symbols."""
        if self.source_steps is not None:
            line = self.source_steps(line)
        return self._split(line)

    def decode(self, joined: str) -> str:
        """One target line with its subwords already joined -> text."""
        if self._detok is not None and joined:
            return self._detok.detokenize(joined.split())
        return joined

    def describe(self) -> str:
        where = f" ({self.model})" if self.model else ""
        parts = [f"subwords: {self.kind}{where}"]
        steps = self.source_steps
        parts.append(
            "source steps: " + (_describe_steps(steps) if steps is not None else "none")
        )
        parts.append(f"detokenize: {self.detokenize or 'no'}")
        return "; ".join(parts)


def _first_file(name: str, dirs: Sequence[Optional[Path]]) -> Optional[Path]:
    for d in dirs:
        if d is not None and (Path(d) / name).is_file():
            return Path(d) / name
    return None


def build_codec(
    src: str,
    tgt: str,
    search_dirs: Sequence[Optional[Path]],
    bpe: str = "auto",
    spm_model: Optional[Path] = None,
    bpe_codes: Optional[Path] = None,
    tokenizer: str = "auto",
    prep_settings: Optional[dict] = None,
) -> TextCodec:
    """The codec for ``src`` -> ``tgt``.

    Args:
        search_dirs: where to look for ``spm.model`` / ``code``, in order (the
            data-bin, the dictionaries' folder, the checkpoint's folder).
        bpe: ``auto`` (an explicit model, else the first one found, else
            ``none`` with a warning), ``sentencepiece``, ``subword_nmt`` or
            ``none``.
        spm_model, bpe_codes: explicit subword models (win over the search).
        tokenizer: ``auto`` (the steps ``prep_settings`` records; without them
            Moses tokenization for subword-nmt and none otherwise), ``moses``
            (Moses tokenization and detokenization only) or ``none``.
        prep_settings: :func:`read_prep_settings` of the data-bin.
    """
    if bpe not in KINDS:
        raise TextSetupError(f"--bpe must be one of {', '.join(KINDS)}, not {bpe!r}")
    if tokenizer not in TOKENIZERS:
        raise TextSetupError(
            f"--tokenizer must be one of {', '.join(TOKENIZERS)}, not {tokenizer!r}"
        )
    if spm_model is not None and bpe_codes is not None:
        raise TextSetupError("give --spm-model or --bpe-codes, not both")
    for path, flag in ((spm_model, "--spm-model"), (bpe_codes, "--bpe-codes")):
        if path is not None and not Path(path).is_file():
            raise TextSetupError(f"{flag}: no file at {path}")

    kind, model = bpe, None
    if bpe == "auto":
        if spm_model is not None:
            kind, model = "sentencepiece", Path(spm_model)
        elif bpe_codes is not None:
            kind, model = "subword_nmt", Path(bpe_codes)
        else:
            found_spm = _first_file(SPM_MODEL, search_dirs)
            found_codes = _first_file(BPE_CODES, search_dirs)
            if found_spm is not None:
                kind, model = "sentencepiece", found_spm
            elif found_codes is not None:
                kind, model = "subword_nmt", found_codes
            else:
                kind = "none"
                looked = ", ".join(str(d) for d in search_dirs if d is not None)
                logger.warning(
                    "no subword model (%s or %s) found in %s: the input is split at "
                    "whitespace only. Pass --spm-model or --bpe-codes, or --bpe none "
                    "if the model was trained on whitespace-split text",
                    SPM_MODEL,
                    BPE_CODES,
                    looked or "no folder",
                )
    elif bpe == "sentencepiece":
        model = Path(spm_model) if spm_model else _first_file(SPM_MODEL, search_dirs)
        if model is None:
            raise TextSetupError(
                f"--bpe sentencepiece: no {SPM_MODEL} in the data-bin or beside the "
                "checkpoint; pass --spm-model FILE"
            )
    elif bpe == "subword_nmt":
        model = Path(bpe_codes) if bpe_codes else _first_file(BPE_CODES, search_dirs)
        if model is None:
            raise TextSetupError(
                f"--bpe subword_nmt: no BPE codes ({BPE_CODES}) in the data-bin or "
                "beside the checkpoint; pass --bpe-codes FILE"
            )
    elif spm_model is not None or bpe_codes is not None:
        raise TextSetupError("--bpe none takes no --spm-model or --bpe-codes")

    source_steps, detok = None, None
    if tokenizer == "moses":
        from .moses import MosesSteps

        source_steps, detok = MosesSteps(src), tgt
    elif tokenizer == "auto":
        if prep_settings is not None and "test_steps" in prep_settings:
            source_steps = _moses_steps(prep_settings, src)
            target_steps = _moses_steps(prep_settings, tgt)
            if target_steps is not None and target_steps.tokenize:
                detok = tgt
        elif kind == "subword_nmt":
            from .moses import MosesSteps

            # fairseq's recipes Moses-tokenize before subword-nmt
            source_steps, detok = MosesSteps(src), tgt
    return TextCodec(kind, model, source_steps, detok)
