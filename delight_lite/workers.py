"""Searches in processes of their own, for ``delight-lite --workers N``.

NumPy runs its elementwise operations on one thread, and the decoder's
products are too small for a second BLAS thread to pay, so a second core helps
a search little. N processes, each with its own model and ``threads // N`` BLAS
threads, decode N batches at once instead (:class:`Workers`). They are
spawned, not forked (a forked child would inherit the BLAS library's threads in
an unknown state), each loads the exported folder, and each serves one batch at
a time over a pipe. Threads of the parent wait on the pipes, so the streaming
(:class:`delight_lite.stream.Streamer`) runs its batches through
:meth:`Workers.map` as it would through threads.

A batch whose search raises comes back as a ``RuntimeError`` with the
worker's message, and the streamer retries it sentence by sentence; a worker
that dies is replaced before the error is raised, so the run goes on.
"""

import multiprocessing as mp
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from .progress import peak_rss_mib


class WorkerError(RuntimeError):
    """A worker process failed on a batch, or died."""


def _serve(conn, folder: str, options, threads: int) -> None:
    """A worker: load the model, then one batch of sources at a time until
    told to stop (None), when it answers with its peak memory and the CPU
    time its searches took."""
    try:
        from threadpoolctl import threadpool_limits

        from .model import Model
        from .search import Search

        limits = threadpool_limits(limits=threads, user_api="blas")  # noqa: F841
        search = Search(Model(folder), options)
    except Exception as e:  # reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    busy = 0.0
    while True:
        try:
            sources = conn.recv()
        except EOFError:  # the parent went away
            return
        if sources is None:
            conn.send(("done", (peak_rss_mib(), busy)))
            return
        start = time.process_time()
        try:
            conn.send(("ok", [hyp for hyp, _ in search.translate(sources)]))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
        busy += time.process_time() - start


class Workers:
    """``n`` search processes over the exported ``folder``, each with
    ``threads`` BLAS threads and the search ``options``
    (:class:`delight_lite.search.Options`)."""

    def __init__(self, n: int, folder, options, threads: int = 1):
        self._start = (str(Path(folder)), options, threads)
        self._context = mp.get_context("spawn")
        self._idle: "queue.Queue" = queue.Queue()
        self._live: List = []  # (process, connection)
        self._closed = False
        self.peaks: List[float] = []  # the workers' peak RSS (MiB), after close()
        self.cpu_seconds: List[float] = []  # their searches' CPU time, after close()
        for _ in range(n):
            self._idle.put(self._spawn())
        self._threads = ThreadPoolExecutor(max_workers=n)

    def _spawn(self):
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_serve, args=(child, *self._start), daemon=True
        )
        process.start()
        child.close()
        try:
            kind, message = parent.recv()
        except EOFError:
            kind, message = "error", f"exit code {process.exitcode}"
        if kind != "ready":
            process.join()
            raise WorkerError(f"a delight-lite worker could not start: {message}")
        self._live.append((process, parent))
        return parent

    def search(self, sources: List[List[int]]) -> List[List[int]]:
        """The best hypotheses of one batch, from the next idle worker."""
        if not self._live:
            raise WorkerError(
                "the delight-lite workers are closed"
                if self._closed
                else "no delight-lite worker is left (none could be restarted)"
            )
        conn = self._idle.get()
        try:
            conn.send(sources)
            kind, value = conn.recv()
        except (EOFError, OSError) as e:
            # it died: a new one takes its place, and this batch fails
            self._live = [(p, c) for p, c in self._live if c is not conn]
            self._idle.put(self._spawn())
            raise WorkerError(f"a delight-lite worker died ({e!r})") from None
        self._idle.put(conn)
        if kind == "error":
            raise WorkerError(value)
        return value

    def map(self, fn: Callable, items: Iterable) -> Iterable:
        """``fn`` over ``items`` in the parent's threads, results in order
        (``fn`` calls :meth:`search`)."""
        return self._threads.map(fn, items)

    def close(self) -> List[float]:
        """Stop the workers; returns their peak memory (MiB each), and keeps
        it in :attr:`peaks` and their searches' CPU time in
        :attr:`cpu_seconds`."""
        self._threads.shutdown()
        self._closed = True
        for process, conn in self._live:
            try:
                conn.send(None)
                kind, value = conn.recv()
                if kind == "done":
                    self.peaks.append(value[0])
                    self.cpu_seconds.append(value[1])
            except (EOFError, OSError):
                pass
            process.join(timeout=10)
        self._live = []
        return self.peaks

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> Optional[bool]:
        self.close()
        return None
