"""Inference helpers for a trained DeLighT model: a lean beam-search engine
(:class:`Engine`) that gives fairseq's SequenceGenerator's hypotheses with
less work per step."""

from .engine import Engine

__all__ = ["Engine"]
