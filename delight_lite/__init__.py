"""Translate with a DeLighT model exported by ``delight-export``, with NumPy
alone: no torch, no fairseq (:mod:`delight_lite.layers` and
:mod:`delight_lite.model`, the arithmetic; :mod:`delight_lite.search`,
fairseq's beam search; :mod:`delight_lite.translate` and
:mod:`delight_lite.cli`, raw text in and out)."""
