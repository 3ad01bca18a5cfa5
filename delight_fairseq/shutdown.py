"""A clean exit: fairseq's prefetching threads are stopped before Python shuts down.

fairseq reads batches ahead on a daemon thread (``BackgroundConsumer``, behind
the ``BufferedIterator`` of every epoch iterator, ``--data-buffer-size`` batches
deep, at most 20). When training stops before the thread has filled its queue
(``--max-update`` mid-epoch, a short run on a large corpus), the thread is
still loading batches when the main thread returns. Python up to 3.13 ends a
daemon thread that asks for the GIL once finalization has begun with
``pthread_exit``; when that request comes from inside torch's C++ (the deleter
of a tensor made by ``torch.from_numpy``, as fairseq's ``MMapIndexedDataset``
returns, or the GIL release around a torch op), the forced unwind meets a
``noexcept`` frame and libstdc++ calls ``std::terminate``: the process prints
"terminate called without an active exception" and dies of SIGABRT (exit code
-6, 134 from a shell) after the checkpoint was saved.

:func:`install` registers an ``atexit`` hook. Python runs it after the
non-daemon threads were joined and before finalization starts, with the
interpreter intact: each live consumer is told to stop after the batch in hand
(the ``max_len`` that ``BufferedIterator.take`` sets), its queue is drained so
that a blocked ``put`` returns, and the thread is joined. The wait is bounded
(:data:`TIMEOUT`); a consumer that does not finish in time is left as it was.
The hook does not touch the exit status or the standard streams (it writes one
line to stderr only when it gives up), so a failed run still fails and buffered
output is flushed as before. In processes that leave through ``os._exit`` (the
workers of ``torch.multiprocessing.spawn``) atexit hooks do not run, and nothing
is finalized there either.
"""

import atexit
import queue
import sys
import threading
import time

#: seconds the hook waits, in all, for the consumers to finish their batch
TIMEOUT = 10.0

_installed = False


def _consumers() -> list:
    """The live fairseq prefetching threads this hook knows how to stop."""
    iterators = sys.modules.get("fairseq.data.iterators")
    kind = getattr(iterators, "BackgroundConsumer", None)
    if kind is None:
        return []
    me = threading.current_thread()
    return [
        t
        for t in threading.enumerate()
        if isinstance(t, kind)
        and t is not me
        and t.is_alive()
        and isinstance(getattr(t, "_queue", None), queue.Queue)
        and hasattr(t, "_max_len")
    ]


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def stop_prefetching(timeout: float = TIMEOUT, threads=None) -> list:
    """Stop fairseq's live ``BackgroundConsumer`` threads (or those of
    ``threads``) and join them.

    Returns the threads still alive after ``timeout`` seconds (normally none).
    The batches they had queued are dropped: call this only when nothing will
    read from those iterators again.
    """
    live = _consumers()
    threads = live if threads is None else [t for t in threads if t in live]
    for t in threads:
        # BackgroundConsumer.run breaks out of its loop once count >= max_len,
        # checked after each put, then puts its end-of-data marker
        t._max_len = 0
    deadline = time.monotonic() + timeout
    while threads:
        for t in threads:
            _drain(t._queue)
            t.join(0.01)
        threads = [t for t in threads if t.is_alive()]
        if time.monotonic() >= deadline:
            break
    return threads


def _at_exit() -> None:
    # best effort: nothing here may change how the process ends
    try:
        left = stop_prefetching()
        if left:
            print(
                f"delight_fairseq: {len(left)} data-prefetching thread(s) still busy "
                f"after {TIMEOUT:.0f} s at exit; the interpreter may abort while "
                "shutting down",
                file=sys.stderr,
            )
    except (Exception, KeyboardInterrupt):
        pass


def install() -> None:
    """Register the exit hook once per process (idempotent)."""
    global _installed
    if not _installed:
        atexit.register(_at_exit)
        _installed = True
