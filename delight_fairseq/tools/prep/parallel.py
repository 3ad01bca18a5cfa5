"""Line-by-line work in several processes, keeping the order of the lines."""

import multiprocessing
import os
from typing import Callable, Iterable, Iterator

CHUNK = 512  # lines per task: large enough to amortise the pickling


def map_lines(
    func: Callable[[str], str], lines: Iterable[str], workers: int = 1
) -> Iterator[str]:
    """``map(func, lines)``, in ``workers`` processes when more than one.

    ``func`` must be picklable (a module-level function or a ``partial`` of
    one); heavy state such as a tokenizer is best cached per process inside
    it (``functools.lru_cache``)."""
    if workers <= 1:
        yield from map(func, lines)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(func, lines, chunksize=CHUNK)


def default_workers() -> int:
    """One per core, at most 8 (the default of the command line's ``--workers``)."""
    return max(1, min(os.cpu_count() or 1, 8))
