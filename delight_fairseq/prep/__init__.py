"""Data preparation for the paper's benchmarks: raw corpora -> ``data-bin/<name>``.

    python -m delight_fairseq.prep iwslt14 --raw DIR
    python -m delight_fairseq.prep wmt14_en_de | wmt14_en_fr | wmt16_en_ro | multi30k ...

One module per step: ``corpus`` (reading, validating, cleaning, splitting
parallel text), ``sources`` (where the official releases put each file, and
fetching them), ``moses`` (punctuation normalisation, tokenisation,
lowercasing, through sacremoses), ``subword`` (subword-nmt BPE and
sentencepiece), ``binarize`` (``fairseq-preprocess`` with an atomic,
idempotent output), ``recipes`` (one function per benchmark) and ``cli``.

The package is not imported by ``delight_fairseq`` itself: loading the model
plugin never pulls in the preprocessing dependencies.
"""
