"""Three narrow fixes that stock fairseq (main, as fairseq-fixed) needs on today's stack.

1. Checkpoints on torch >= 2.6.

torch now defaults to ``torch.load(weights_only=True)``, which refuses the
argparse Namespace, omegaconf configs and numpy values that every fairseq
checkpoint holds: resume, ``fairseq-generate``, ``fairseq-interactive`` and
``from_pretrained`` all fail with "Unsupported global". The fix is narrow:
calls made *from fairseq's own modules* that leave ``weights_only`` unset get
``weights_only=False``, as they did when fairseq was written. Any explicit
argument, and every other caller, is left exactly as it was. A checkpoint that
cannot be read (truncated, corrupt) fails with a message naming the file.

2. No silently dropped batch. fairseq main's ``data_utils.batch_by_size`` drops
the last batch whenever its size is not a multiple of
``--required-batch-size-multiple`` (8 by default): ``fairseq-generate
--batch-size 50`` on a 100-sentence test set translates and scores only 96 of
them, and every training epoch loses a few sentences. fairseq 0.12.2 kept that
batch; so does this fix. Batches are otherwise unchanged.

3. No input lost to one bad byte. ``fairseq-interactive --input FILE`` decodes
strictly and stops at the first invalid UTF-8 byte, translating nothing after
it. With the plugin loaded each line is decoded on its own; an invalid one gets
U+FFFD (then ``<unk>``) and a warning naming its line number.

``install`` also registers the exit hook of ``shutdown.py``, which stops
fairseq's data-prefetching thread before Python shuts down (a run that stopped
mid-epoch could otherwise abort at exit with "terminate called without an
active exception" after saving its checkpoint).
"""

import functools
import logging
import os
import pickle
import sys
import zipfile

import numpy as np
import torch

_MARK = "_delight_fairseq_compat"
logger = logging.getLogger(__name__)
# what torch.load raises on a truncated or damaged file
UNREADABLE = (
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    ValueError,
)


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file that fairseq tried to read cannot be unpickled."""


def _called_from_fairseq() -> bool:
    """Whether the nearest caller outside this module is fairseq's own code.

    Walks the stack instead of counting frames, so a helper or another layer
    of wrapping inside this module does not change the answer.
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return module == "fairseq" or module.startswith("fairseq.")


def install() -> None:
    """Apply the fixes and register the exit hook, once per process (idempotent)."""
    from . import shutdown

    _wrap_torch_load()
    _keep_remainder_batch()
    _lenient_interactive_input()
    shutdown.install()


def _wrap_torch_load() -> None:
    if getattr(torch.load, _MARK, False):
        return
    original = torch.load

    @functools.wraps(original)
    def load(*args, **kwargs):
        from_fairseq = _called_from_fairseq()
        if "weights_only" not in kwargs and from_fairseq:
            kwargs["weights_only"] = False
        try:
            return original(*args, **kwargs)
        except UNREADABLE as err:
            source = args[0] if args else kwargs.get("f")
            path = getattr(source, "name", source)
            safe = kwargs.get("weights_only", True)  # a refusal, not corruption
            if not from_fairseq or safe or not isinstance(path, (str, os.PathLike)):
                raise
            raise CorruptCheckpointError(
                f"cannot read the checkpoint {os.fspath(path)}: the file is truncated or "
                f"corrupt ({type(err).__name__}: {err}). Nothing has been written over "
                "it. Restore it from a copy, or point --path / --restore-file at another "
                "checkpoint (a resume without it starts from scratch)"
            ) from err

    setattr(load, _MARK, True)
    torch.load = load


def _keep_remainder_batch() -> None:
    from fairseq.data import data_utils

    original = data_utils.batch_by_size
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def batch_by_size(indices, *args, **kwargs):
        batches = original(indices, *args, **kwargs)
        covered = sum(len(b) for b in batches)
        if covered < len(indices):
            indices = np.asarray(indices, dtype=np.int64)
            seen = np.concatenate(batches) if batches else np.empty(0, np.int64)
            batches = list(batches) + [indices[~np.isin(indices, seen)]]
        return batches

    setattr(batch_by_size, _MARK, True)
    data_utils.batch_by_size = batch_by_size


#: invalid-UTF-8 lines named one by one in the log; later ones are counted
_NAMED_BAD_LINES = 10


def _read_lines_leniently(input: str, buffer_size: int):
    """fairseq-interactive's ``buffered_read``, decoding each line on its own:
    invalid UTF-8 becomes U+FFFD (then ``<unk>``) with a warning that names the
    line, instead of a UnicodeDecodeError that loses the rest of the input."""
    name = "standard input" if input == "-" else input
    stream = sys.stdin.buffer if input == "-" else open(input, "rb")
    buffer, bad = [], 0
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace")
                bad += 1
                if bad <= _NAMED_BAD_LINES:
                    logger.warning(
                        "%s, line %d: invalid UTF-8, replaced by U+FFFD", name, number
                    )
            buffer.append(line.strip())
            if len(buffer) >= buffer_size:
                yield buffer
                buffer = []
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if bad > _NAMED_BAD_LINES:
        logger.warning("%s: %d lines had invalid UTF-8 in all", name, bad)
    if buffer:
        yield buffer


def _lenient_interactive_input() -> None:
    """Only when fairseq-interactive is running (its module is loaded before
    the plugin, which its argument parsing imports)."""
    interactive = sys.modules.get("fairseq_cli.interactive")
    if interactive is None or getattr(interactive.buffered_read, _MARK, False):
        return
    setattr(_read_lines_leniently, _MARK, True)
    interactive.buffered_read = _read_lines_leniently
