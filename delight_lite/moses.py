"""Moses pre-processing through sacremoses: the steps fairseq's recipes run in Perl.

=============================================  =========================================
fairseq's pipe                                 here (:class:`MosesSteps`)
=============================================  =========================================
``normalize-punctuation.perl LANG``            ``normalize_punct=True`` (perl parity)
``remove-non-printing-char.perl``              ``remove_non_printing=True``
``tokenizer.perl [-a] -l LANG``                ``tokenize=True`` (``aggressive_dashes``)
``lowercase.perl``                             ``lowercase=True``
WMT'16 ``normalise-romanian.py``               ``romanian_commas=True``
=============================================  =========================================

Tokenization escapes XML special characters (``&amp;``, ``&apos;``, ``&quot;``,
``&lt;``, ``&gt;``, ``&#91;``, ``&#93;``, ``&#124;``) as ``tokenizer.perl``
does. One difference between sacremoses 0.2.0 and the current
``tokenizer.perl`` is corrected: the Perl script always splits the period off
the *last* word of a line ("... in the U.S." -> "u.s ."), even when that word
is a non-breaking prefix such as "U.S" or "Dr"; sacremoses keeps it attached.
With the correction the IWSLT'14 test set tokenizes exactly as fairseq's
``prepare-iwslt14.sh`` left it (``tests/test_prep_iwslt14.py``).
"""

import functools
import unicodedata
from dataclasses import dataclass


class _NonPrinting(dict):
    """``str.translate`` table: Unicode category C (control, format, surrogate,
    private use, unassigned) -> space, anything else kept; filled as met."""

    def __missing__(self, code: int):
        value = " " if unicodedata.category(chr(code))[0] == "C" else code
        self[code] = value
        return value


_NON_PRINTING = _NonPrinting()
# S and T with cedilla -> with comma below, the correct Romanian letters
_ROMANIAN = str.maketrans("\u015e\u015f\u0162\u0163", "\u0218\u0219\u021a\u021b")


def _perl_last_word(text: str) -> str:
    """``tokenizer.perl``'s rule for the last word, after sacremoses' prefixes."""
    head, sep, last = text.rpartition(" ")
    # tokenizer.perl: "split last words independently as they are unlikely
    # to be non-breaking prefixes" (its /^(\S+)\.$/ needs one char before)
    if len(last) > 1 and last.endswith("."):
        return f"{head}{sep}{last[:-1]} ."
    return text


@functools.lru_cache(maxsize=None)
def _tokenizer(lang: str):
    """sacremoses' tokenizer with ``tokenizer.perl``'s rule for the last word
    (sacremoses is imported on first use: a process that runs no Moses step
    does not load it)."""
    from sacremoses import MosesTokenizer

    class PerlMosesTokenizer(MosesTokenizer):
        def handles_nonbreaking_prefixes(self, text: str) -> str:
            return _perl_last_word(super().handles_nonbreaking_prefixes(text))

    return PerlMosesTokenizer(lang=lang)


@functools.lru_cache(maxsize=None)
def _normalizer(lang: str):
    from sacremoses import MosesPunctNormalizer

    # perl_parity: the Perl script maps a closing U+2019 to '"', and fairseq's
    # WMT'14 data was made with it
    return MosesPunctNormalizer(lang=lang, perl_parity=True)


def remove_non_printing(line: str) -> str:
    """``remove-non-printing-char.perl``: every Unicode "Other" character
    (control, format, unassigned, private use) becomes a space."""
    return line.translate(_NON_PRINTING)


@dataclass(frozen=True)
class MosesSteps:
    """Which Moses steps to run on each line of one language, in this order.

    Args:
        lang: ISO code for the language-specific rules (``de``, ``en``, ...).
        apostrophe: U+2019 -> ``'`` first, as fairseq's ``sed`` does on its
            test sets (default False).
        normalize_punct: ``normalize-punctuation.perl`` (default False).
        remove_non_printing: ``remove-non-printing-char.perl`` (default False).
        tokenize: ``tokenizer.perl`` with XML escaping (default True).
        aggressive_dashes: its ``-a``: ``foo-bar`` -> ``foo @-@ bar`` (default False).
        lowercase: ``lowercase.perl`` (default False).
        romanian_commas: Ş ş Ţ ţ (cedilla, common in older corpora such as
            Europarl) -> Ș ș Ț ț (comma below, as in the WMT'16 test sets),
            first, like the WMT'16 scripts' ``normalise-romanian.py``
            (default False).
    """

    lang: str
    apostrophe: bool = False
    normalize_punct: bool = False
    remove_non_printing: bool = False
    tokenize: bool = True
    aggressive_dashes: bool = False
    lowercase: bool = False
    romanian_commas: bool = False

    def __call__(self, line: str) -> str:
        if self.romanian_commas:
            line = line.translate(_ROMANIAN)
        if self.apostrophe:
            line = line.replace("\u2019", "'")
        if self.normalize_punct:
            line = _normalizer(self.lang).normalize(line)
        if self.remove_non_printing:
            line = remove_non_printing(line)
        if self.tokenize and line.strip():  # the Perl script passes blank lines through
            line = _tokenizer(self.lang).tokenize(
                line,
                aggressive_dash_splits=self.aggressive_dashes,
                return_str=True,
                escape=True,
            )
        if self.lowercase:
            line = line.lower()
        return line
