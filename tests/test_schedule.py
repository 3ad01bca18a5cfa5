"""--lr-scheduler wallclock_cosine (delight_fairseq/schedule.py) against fairseq's
own cosine scheduler: the same warmup; at a constant time per update, the same decay
as fairseq's cosine with the period the run makes; no restart past the budget; the
clock carried through the scheduler's state; errors that name the flags; and a
fairseq-train run that stops on wall clock with its LR annealed."""

import math
import re

import pytest
import torch
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.optim import build_optimizer
from fairseq.optim.lr_scheduler import build_lr_scheduler

from delight_fairseq.schedule import WallClockCosineSchedule
from delight_fairseq.tools.synthetic import write_corpus

from helpers import TINY_MODEL, TRAIN, USER_DIR, preprocess, run_cli, train_namespace

PEAK, WARMUP, INIT = 0.003, 40, 1e-7
FLAGS = ["--arch", "delight", "--optimizer", "adam", "--lr", str(PEAK),
         "--warmup-updates", str(WARMUP), "--warmup-init-lr", str(INIT)]  # fmt: skip
# 6 minutes: at one update a second, warmup ends at 40 s and the cosine lasts 320
BUDGET = ["--stop-time-hours", "0.1"]
PERIOD = 360 - WARMUP


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(WallClockCosineSchedule, "clock", staticmethod(c))
    return c


def scheduler(*flags):
    """The scheduler fairseq-train would build from ``flags``, on its own optimizer."""
    cfg = convert_namespace_to_omegaconf(train_namespace([*FLAGS, *flags]))
    optimizer = build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    return build_lr_scheduler(cfg.lr_scheduler, optimizer)


def fairseq_cosine(period, *flags):
    return scheduler("--lr-scheduler", "cosine", "--lr-period-updates", str(period),
                     *flags)  # fmt: skip


def ours(*flags):
    return scheduler("--lr-scheduler", "wallclock_cosine", *BUDGET, *flags)


def test_it_is_what_fairseq_builds_for_the_flag(clock):
    assert isinstance(ours(), WallClockCosineSchedule)


def test_at_a_constant_pace_it_is_fairseqs_cosine_with_the_period_the_run_makes(clock):
    mine, theirs = ours(), fairseq_cosine(PERIOD)
    assert mine.optimizer.get_lr() == pytest.approx(theirs.optimizer.get_lr())
    for n in range(0, 360):
        clock.t = float(n)  # one update a second
        assert mine.step_update(n) == pytest.approx(theirs.step_update(n), rel=1e-9), n
        if n == WARMUP:
            assert mine.lr == pytest.approx(PEAK)
    # the end of the budget: 0 here, where fairseq's cosine begins its second period
    clock.t = 360.0
    assert mine.step_update(360) == pytest.approx(0.0, abs=1e-15)


def test_the_decay_follows_the_time_not_the_updates(clock):
    mine = ours()
    clock.t = 10.0
    mine.step_update(WARMUP)  # warmup ends at 10 s: the cosine lasts 350 s
    clock.t = 10.0 + 350 / 2
    assert mine.step_update(WARMUP + 1) == pytest.approx(PEAK / 2)
    clock.t = 10.0 + 350 / 4
    assert mine.step_update(10_000) == pytest.approx(
        PEAK / 2 * (1 + math.cos(math.pi / 4))
    )


def test_past_the_budget_it_stays_at_min_lr_where_fairseqs_cosine_restarts(clock):
    mine, theirs = ours("--min-lr", "1e-5"), fairseq_cosine(PERIOD, "--min-lr", "1e-5")
    clock.t = 400.0
    assert mine.step_update(400) == pytest.approx(1e-5)
    # fairseq's cosine begins a second period at --lr-shrink (0.1) of the peak
    assert theirs.step_update(400) > 0.09 * PEAK


def test_a_resumed_run_continues_the_decay_from_its_saved_time(clock):
    first = ours()
    clock.t = 100.0
    first.step_update(WARMUP)  # warmup ended at 100 s
    clock.t = 180.0
    state = first.state_dict()
    assert state["elapsed"] == 180.0 and state["warmup_end"] == 100.0
    clock.t = 5_000.0  # a new process: its clock starts anywhere
    resumed = ours()
    resumed.load_state_dict(state)
    clock.t = 5_000.0 + 50
    expected = PEAK / 2 * (1 + math.cos(math.pi * (230 - 100) / (360 - 100)))
    assert resumed.step_update(500) == pytest.approx(expected)


def test_another_schedulers_state_starts_the_decay_now_with_a_warning(clock, caplog):
    mine = ours()
    clock.t = 1_000.0
    mine.load_state_dict({"best": 2.5})  # what inverse_sqrt saves
    assert "raise --stop-time-hours" in caplog.text
    clock.t = 1_000.0 + 20
    assert mine.step_update(5_000) == pytest.approx(PEAK)  # its warmup ends now
    assert mine.best == 2.5


def test_without_warmup_the_decay_starts_at_the_first_update(clock):
    mine = ours("--warmup-updates", "0")
    assert mine.optimizer.get_lr() == pytest.approx(PEAK)
    clock.t = 180.0
    assert mine.step_update(1) == pytest.approx(PEAK / 2)


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], r"set --stop-time-hours"),
        ([*BUDGET, "--distributed-world-size", "2"], r"one process.*2 workers"),
    ],
)
def test_errors_name_the_flag_and_the_fix(clock, flags, message):
    with pytest.raises(ValueError, match=message) as error:
        scheduler("--lr-scheduler", "wallclock_cosine", *flags)
    assert "--lr-scheduler cosine --lr-period-updates" in str(error.value)


@pytest.mark.slow
def test_fairseq_train_stops_on_time_with_the_lr_annealed(tmp_path):
    data = preprocess(
        write_corpus(tmp_path / "raw", 400, 40, 0, seed=3), tmp_path / "bin"
    )
    # the flags after TRAIN replace its own (the last of a repeated flag wins)
    _, log = run_cli(
        "fairseq-train", data, "--user-dir", USER_DIR, *TINY_MODEL, *TRAIN,
        "--lr-scheduler", "wallclock_cosine", "--warmup-updates", "5",
        "--stop-time-hours", str(15 / 3600), "--max-tokens", "400",
        "--log-interval", "1", "--save-dir", tmp_path / "ckpt",
    )  # fmt: skip
    lrs = [float(x) for x in re.findall(r"train_inner \| .*?\blr=([\d.e-]+),", log)]
    assert len(lrs) > 20, log[-2000:]
    peak = 0.005  # TRAIN's --lr
    after_warmup = lrs[5:]
    assert max(lrs) == pytest.approx(peak, rel=0.05)
    assert all(b <= a for a, b in zip(after_warmup, after_warmup[1:]))
    # fairseq stopped on --stop-time-hours with the LR at a few % of its peak or less
    assert lrs[-1] < 0.05 * peak
