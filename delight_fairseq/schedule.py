"""``--lr-scheduler wallclock_cosine``: a cosine decay that ends with the training time.

fairseq's ``cosine`` scheduler anneals over a number of updates
(``--lr-period-updates``). A run that stops on wall clock (``--stop-time-hours``)
does not know in advance how many updates it will make: set the period too short and
fairseq restarts the cosine at a tenth of the peak before the run ends; too long and
the run stops before the LR is low. This scheduler anneals over the time instead:

    warmup (updates < --warmup-updates): linear from --warmup-init-lr to --lr,
        as fairseq's cosine;
    then:   lr = min_lr + (lr - min_lr) / 2 * (1 + cos(pi * f)),
            f = (t - t_w) / (T - t_w), clipped to [0, 1],

where t is the training time so far, t_w the time warmup ended and T is
``--stop-time-hours``. The LR reaches --min-lr when fairseq stops the run, and stays
there (no restart). If the time per update is constant, this is fairseq's cosine
with the period that the run turns out to make.

The clock is the scheduler's own: it starts when fairseq builds the scheduler (a
moment after fairseq's own training clock starts) and counts everything that follows,
validation and checkpoints included, as ``--stop-time-hours`` does. Its time is saved
in the checkpoint (the scheduler's state), so a resumed run continues the decay where
it stopped. The LR depends on how fast the machine runs, so two runs of the same seed
are not bit-identical; the resume of a ``cosine`` run is.

One process only: each worker of a distributed run would read its own clock and set
its own LR.
"""

import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import List

from fairseq.dataclass import FairseqDataclass
from fairseq.optim.lr_scheduler import FairseqLRScheduler, register_lr_scheduler
from omegaconf import II

logger = logging.getLogger(__name__)


@dataclass
class WallClockCosineConfig(FairseqDataclass):
    warmup_updates: int = field(
        default=0,
        metadata={"help": "warm the LR up linearly over the first N updates"},
    )
    warmup_init_lr: float = field(
        default=-1,
        metadata={"help": "the LR of the first update; default: --min-lr"},
    )
    lr: List[float] = field(
        default=II("optimization.lr"), metadata={"help": "the peak LR"}
    )
    min_lr: float = field(
        default=0.0, metadata={"help": "the LR at the end of the training time"}
    )
    stop_time_hours: float = II("optimization.stop_time_hours")
    distributed_world_size: int = II("distributed_training.distributed_world_size")


@register_lr_scheduler("wallclock_cosine", dataclass=WallClockCosineConfig)
class WallClockCosineSchedule(FairseqLRScheduler):
    """Linear warmup over updates, then one cosine over the rest of
    ``--stop-time-hours`` (module docstring)."""

    #: seconds; tests replace it with a clock they drive
    clock = staticmethod(time.monotonic)

    def __init__(self, cfg: WallClockCosineConfig, optimizer):
        super().__init__(cfg, optimizer)
        if isinstance(cfg.lr, Collection) and len(cfg.lr) > 1:
            raise ValueError(
                f"--lr-scheduler wallclock_cosine takes one peak LR, not {cfg.lr}"
            )
        if not cfg.stop_time_hours or cfg.stop_time_hours <= 0:
            raise ValueError(
                "--lr-scheduler wallclock_cosine anneals over the training time: "
                "set --stop-time-hours (e.g. --stop-time-hours 1), or anneal over "
                "updates with --lr-scheduler cosine --lr-period-updates N"
            )
        if cfg.distributed_world_size > 1:
            raise ValueError(
                "--lr-scheduler wallclock_cosine runs in one process: each of the "
                f"{cfg.distributed_world_size} workers would read its own clock and "
                "set its own LR. Anneal over updates instead (--lr-scheduler cosine "
                "--lr-period-updates N)"
            )
        self.peak = cfg.lr[0] if isinstance(cfg.lr, Collection) else cfg.lr
        self.min_lr = min(cfg.min_lr, self.peak)
        self.init_lr = self.min_lr if cfg.warmup_init_lr < 0 else cfg.warmup_init_lr
        self.budget = cfg.stop_time_hours * 3600.0
        # training seconds before this process (a resumed run), and this process's start
        self.earlier = 0.0
        self.start = self.clock()
        # the training time at which warmup ended; None while it lasts
        self.warmup_end = 0.0 if cfg.warmup_updates <= 0 else None
        self.lr = self.init_lr if cfg.warmup_updates > 0 else self.peak
        self.optimizer.set_lr(self.lr)
        logger.info(
            "wallclock_cosine: LR %g, warmup %d updates from %g, then a cosine to %g "
            "over the rest of %g minutes (--stop-time-hours)",
            self.peak, cfg.warmup_updates, self.init_lr, self.min_lr,
            self.budget / 60,
        )  # fmt: skip

    def elapsed(self) -> float:
        """Training seconds so far, earlier processes included."""
        return self.earlier + self.clock() - self.start

    def state_dict(self):
        return {
            **super().state_dict(),
            "elapsed": self.elapsed(),
            "warmup_end": self.warmup_end,
        }

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.start = self.clock()
        if "elapsed" not in state_dict:
            # fairseq hands over the state of whatever scheduler saved the checkpoint
            logger.warning(
                "wallclock_cosine: the checkpoint's LR scheduler kept no training "
                "time (another --lr-scheduler saved it), so the decay counts from "
                "now, while --stop-time-hours also counts the earlier training: "
                "raise --stop-time-hours by the hours already trained, or the run "
                "stops before the LR reaches --min-lr"
            )
            return
        self.earlier = state_dict["elapsed"]
        self.warmup_end = state_dict["warmup_end"]

    def step(self, epoch, val_loss=None):
        super().step(epoch, val_loss)
        return self.optimizer.get_lr()

    def step_update(self, num_updates):
        """The LR after ``num_updates`` updates, at the time it is called."""
        warmup = self.cfg.warmup_updates
        if num_updates < warmup:
            self.lr = self.init_lr + num_updates * (self.peak - self.init_lr) / warmup
        else:
            now = self.elapsed()
            if self.warmup_end is None:
                self.warmup_end = now
            span = self.budget - self.warmup_end
            f = 1.0 if span <= 0 else min(max((now - self.warmup_end) / span, 0.0), 1.0)
            self.lr = self.min_lr + 0.5 * (self.peak - self.min_lr) * (
                1 + math.cos(math.pi * f)
            )
        self.optimizer.set_lr(self.lr)
        return self.lr
