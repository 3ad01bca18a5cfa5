"""benchmarks/curves.py: the seeds of a model are grouped into one row of the
summary, with their means, and each seed's candidate is chosen on validation; the
figure draws every run; the default models are the shoot-out's three, apart from the
trials (tests/test_trials.py, test_trials_clock.py and test_trials_d160.py); every
model has a checkpoint interval; the speed probe reads updates/s from the log after its first line."""

import pytest

from helpers import load_benchmark


@pytest.fixture(scope="module")
def curves():
    return load_benchmark("curves")


def run(model, seed, params, ends, average, average_valid=None):
    """A curves.json entry with the fields the report reads; each point and the
    average score 1 BLEU higher on validation than on test unless
    ``average_valid`` says otherwise."""
    return {
        "model": model,
        "seed": seed,
        "params": params,
        "points": [
            {
                "minutes": 20.0 * (i + 1),
                "updates": 1000 * (i + 1),
                "valid_bleu": b + 1,
                "test_bleu": b,
            }
            for i, b in enumerate(ends)
        ],
        "average": {
            "test_bleu": average,
            "valid_bleu": average + 1 if average_valid is None else average_valid,
        },
    }


RESULTS = {
    # the average (42.5 on validation) beats the end (42.0): it is the candidate
    "transformer_256 seed2": run(
        "transformer_256", 2, 7_070_000, [30.0, 41.0], 40.5, average_valid=42.5
    ),
    "delight_d128 seed1": run("delight_d128", 1, 1_910_000, [33.0, 39.38], 39.05),
    "transformer_256 seed1": run("transformer_256", 1, 7_070_000, [35.0, 41.54], 40.31),
}


def test_summary_groups_seeds_and_takes_their_means(curves):
    rows = curves.summary(RESULTS).splitlines()
    assert len(rows) == 4  # header, rule, one row per model
    delight, transformer = rows[2], rows[3]
    cells = [c.strip() for c in transformer.strip("|").split("|")]
    # seeds in order; the last point of each run; (41.54 + 41.0) / 2, (40.31 + 40.5) / 2
    # the candidates: seed 1's end (42.54 on validation against 41.31), seed 2's
    # average (42.5 against 42.0); (41.54 + 40.5) / 2
    assert cells == ["transformer_256", "7,070,000", "1, 2", "2,000, 2,000",
                     "41.54 / 41.00", "41.27", "40.31 / 40.50", "40.41",
                     "41.54 (end) / 40.50 (average)", "41.02"]  # fmt: skip
    cells = [c.strip() for c in delight.strip("|").split("|")]
    assert cells[2:] == ["1", "2,000", "39.38", "39.38", "39.05", "39.05",
                         "39.38 (end)", "39.38"]  # fmt: skip


def test_a_tie_on_validation_keeps_the_end_of_the_budget(curves):
    tied = run("delight_d192", 1, 3_070_000, [38.0, 40.0], 40.4, average_valid=41.0)
    assert curves.candidate(tied) == ("end", 40.0)
    ahead = run("delight_d192", 1, 3_070_000, [38.0, 40.0], 40.4, average_valid=41.01)
    assert curves.candidate(ahead) == ("average", 40.4)


def test_the_figure_draws_every_run(curves, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    curves.plot(RESULTS, 60, path)
    assert path.stat().st_size > 10_000


def test_the_figure_draws_more_models_than_its_palette_has_colours(curves, tmp_path):
    pytest.importorskip("matplotlib")
    many = {f"trial_{i} seed1": run(f"trial_{i}", 1, 3_500_000, [30.0, 40.0], 39.5)
            for i in range(25)}  # fmt: skip
    path = tmp_path / "curves.png"
    curves.plot(many, 60, path)
    assert path.stat().st_size > 10_000


def test_the_shootout_models_are_the_three_and_the_trials_are_apart(curves):
    # shootout.py trains every model of multi30k.MODELS by default: two DeLighT sizes
    # and the transformer, not the trials (23 models x 2 seeds before they moved)
    shootout = set(curves.multi30k.MODELS)
    assert shootout == set(curves.DEFAULT_MODELS)
    assert shootout == {"transformer_256", "delight_d192", "delight_d128"}
    assert not shootout & set(curves.trials.TRIALS)
    assert set(curves.trials.ALL_MODELS) == shootout | set(curves.trials.TRIALS)


def test_every_model_has_a_checkpoint_interval(curves):
    assert set(curves.EVERY) == set(curves.trials.ALL_MODELS)
    trials = curves.trials.TRIALS
    # the trials on batches of 2,048 tokens save every twice their base's updates, the
    # one on 1,024 every four times
    heads = "delight_d160_depth2to4_ffn528_cross160_heads4_fast_prenorm_wd"
    smaller = {
        "delight_d192_ffn1_clock_fast_b2048": 600,
        f"{heads}_drop2_b2048_hour": 600,
        f"{heads}_drop3_b2048_hour": 600,
        f"{heads}_drop4_b2048_hour": 600,
        f"{heads}_drop2_b2048_clock": 600,
        f"{heads}_drop2_b1024_hour": 1_200,
    }
    for name, every in smaller.items():
        assert curves.EVERY[name] == every, name
    for name in set(trials) - set(smaller):
        assert curves.EVERY[name] == curves.EVERY[trials[name][0]], name


def fake_train(lines):
    """multi30k.train writing ``lines`` of fairseq's train_inner log."""

    def train(flags, save_dir, minutes, seed, extra=(), data=None):
        assert "--disable-validation" in extra and minutes == 2.5
        log = "\n".join(
            f"| INFO | train_inner | epoch 001:  {u} / 140 loss=9.1, ups=1.2, "
            f"num_updates={u}, lr=0.0003, gnorm=1.1, train_wall={w - 1}, wall={w}"
            for u, w in lines
        )
        (save_dir / "train.log").write_text(log)
        return {"wall_s": 150.0, "peak_rss_mib": 1400, "cpu_share": 0.97}

    return train


def test_the_probe_times_updates_after_the_first_log_line(curves, monkeypatch):
    # the first 25 updates hold the start-up; from the second line (50, 60 s) to the
    # last (175, 160 s): 125 updates in 100 s
    lines = [(25, 40), (50, 60), (100, 95), (175, 160)]
    monkeypatch.setattr(curves.multi30k, "train", fake_train(lines))
    monkeypatch.setattr(curves.trials, "data_bin", lambda model: None)
    facts = curves.probe("delight_d128", 150, 1)
    assert facts["updates_per_s"] == round(125 / 100, 3)
    assert facts["from_to"] == (50, 175) and facts["cpu_share"] == 0.97


def test_the_probe_asks_for_more_time_when_the_log_is_short(curves, monkeypatch):
    monkeypatch.setattr(curves.multi30k, "train", fake_train([(25, 40), (50, 60)]))
    monkeypatch.setattr(curves.trials, "data_bin", lambda model: None)
    with pytest.raises(RuntimeError, match="give --probe more time"):
        curves.probe("delight_d128", 150, 1)
