"""The experiment tooling around the plugin: training recipes, evaluation,
checkpoint averaging, the reproduce driver, data preparation and synthetic data.

The plugin (``--user-dir delight_fairseq``) never imports this package; the
tooling reads the benchmark catalog (``delight_fairseq/catalog.py``) and
builds models through ``delight_fairseq/builder.py``. Its commands are the
console scripts of ``setup.py``: ``delight-prep``, ``delight-train``,
``delight-evaluate``, ``delight-average``, ``delight-reproduce``, ``delight-demo``,
``delight-convert-authors``.
"""
