"""Inference helpers for a trained DeLighT model: a lean beam-search engine
(:class:`Engine`) that gives fairseq's SequenceGenerator's hypotheses with
less work per step, and :class:`Translator` (raw text in, translations out;
:mod:`delight_fairseq.inference.translate`, imported on first use)."""

from .engine import Engine

__all__ = ["Engine", "Translator"]


def __getattr__(name):
    # lazily: `python -m delight_fairseq.inference.translate` would otherwise
    # find the module already imported (runpy's RuntimeWarning)
    if name == "Translator":
        from .translate import Translator

        return Translator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
