"""Data preparation for the paper's benchmarks: raw corpora -> ``data-bin/<name>``.

    delight-prep iwslt14_de_en --raw DIR
    delight-prep BENCHMARK ...        (any name of delight_fairseq/catalog.py)

One module per step: ``corpus`` (reading, validating, cleaning, splitting
parallel text), ``sources`` (where the official releases put each file, and
fetching them), ``moses`` (punctuation normalisation, tokenisation,
lowercasing, through sacremoses), ``subword`` (subword-nmt BPE and
sentencepiece), ``binarize`` (``fairseq-preprocess`` with an atomic,
idempotent output), ``datasets`` (one function per corpus family, named by
the catalog's records) and ``cli``.

The package is not imported by the plugin (``delight_fairseq``) itself: loading the model
plugin never pulls in the preprocessing dependencies.
"""
