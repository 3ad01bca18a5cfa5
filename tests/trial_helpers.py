"""What the tests of benchmarks/trials.py share: each model's training command as
fairseq parses it, the LR its scheduler sets, the model it builds, and what one
model changes in another."""

import pytest

from helpers import load_benchmark, make_dictionary, n_params, train_namespace

# every model's data, batch, optimizer and criterion flags (before the model's own)
COMMON = load_benchmark("multi30k").COMMON


def parsed(trials, model):
    """fairseq's namespace for ``model``'s training command (COMMON, then its flags)."""
    return train_namespace([*COMMON, *trials.ALL_MODELS[model]])


def changed(trials, model, trial):
    before, after = vars(parsed(trials, model)), vars(parsed(trials, trial))
    assert before.keys() == after.keys()
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def optimizer_and_config(namespace, params):
    """fairseq's optimizer for ``params`` as the training command ``namespace``
    builds it, and the command's config."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.optim import build_optimizer

    cfg = convert_namespace_to_omegaconf(namespace)
    return build_optimizer(cfg.optimizer, params), cfg


def learning_rates(namespace, updates):
    """The LR fairseq's scheduler sets after each of ``updates``."""
    import torch
    from fairseq.optim.lr_scheduler import build_lr_scheduler

    optimizer, cfg = optimizer_and_config(
        namespace, [torch.nn.Parameter(torch.zeros(1))]
    )
    scheduler = build_lr_scheduler(cfg.lr_scheduler, optimizer)
    return [scheduler.step_update(n) for n in updates]


def built(trials, model, vocab):
    """``model`` as its training command builds it, on one joined dictionary."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    from delight_fairseq.builder import DictionaryTask

    ns = parsed(trials, model)
    dictionary = make_dictionary(vocab)
    return ARCH_MODEL_REGISTRY[ns.arch].build_model(ns, DictionaryTask(dictionary))


def half_the_transformer(trials, vocab=6_008):
    """Half the parameters of the transformer 3+3 x 256 on ``vocab`` pieces: the
    most a DeLighT trial may have."""
    return n_params(built(trials, "transformer_256", vocab)) / 2


def ffn_shapes(model):
    """The set of (fc1, fc2) weight shapes of every block's FFN, both sides."""
    sides = (model.encoder, model.decoder)
    return {
        (layer.ffn.fc1.weight.shape, layer.ffn.fc2.weight.shape)
        for side in sides
        for layer in side.layers
    }


def shared_changes(trials, trial, base="delight_d128"):
    """The settings that ``trial`` changes in ``base``, among those both
    schedulers' namespaces have."""
    recipe, changed = parsed(trials, base), parsed(trials, trial)
    shared = vars(recipe).keys() & vars(changed).keys()
    return {k: (vars(recipe)[k], vars(changed)[k]) for k in shared
            if vars(recipe)[k] != vars(changed)[k]}  # fmt: skip


def anneals_within(trial, hour):
    """The peak LR after warmup, and under 1 % of it at ``hour`` and 2.5 % later."""
    peak = trial.lr[0]
    warmup, end, faster = learning_rates(trial, [400, hour, int(1.025 * hour)])
    assert warmup == pytest.approx(peak)
    assert end < peak * 0.01 and faster < peak * 0.01


def fake_prep(monkeypatch, trials, folder):
    """multi30k's data-bins made in ``folder`` by a stand-in for ``delight-prep``
    that records what it was asked for; returns the record."""
    made = []

    def prep(bench, opts):
        made.append((bench.name, opts.dest, opts.subwords))
        opts.dest.mkdir(parents=True)
        (opts.dest / "dict.de.txt").write_text("")

    monkeypatch.setattr(trials.multi30k, "DATA_BIN", folder / "multi30k_de_en")
    monkeypatch.setattr("delight_fairseq.tools.prep.cli.prepare", prep)
    return made
