"""Several engines decoding batches at once, each in a thread of its own.

On a CPU a beam-search step is many small matmuls: torch's intra-op threads
share each of them and wait for each other, while independent batches keep
every core busy. torch releases the GIL inside its operators, so N Python
threads, each running its own engine with ``torch.set_num_threads(1)``,
decode N batches in parallel::

    engines = [Engine(model, tgt_dict, beam=5) for _ in range(2)]
    pool = EnginePool(engines)
    results = list(pool.map(lambda b: pool.translate(*b), batches))  # in order

An engine keeps per-search caches, so each batch takes an idle engine and gives
it back; the model's weights are shared.
"""

import queue
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Sequence, TypeVar

from torch import Tensor

T = TypeVar("T")
R = TypeVar("R")


class EnginePool:
    """Engines (``Engine`` or anything with ``translate(src_tokens, src_lengths)``)
    that translate batches concurrently; one engine runs without threads."""

    def __init__(self, engines: Sequence):
        if not engines:
            raise ValueError("EnginePool needs at least one engine")
        self.size = len(engines)
        self._idle: "queue.SimpleQueue" = queue.SimpleQueue()
        for engine in engines:
            self._idle.put(engine)
        self._threads = (
            ThreadPoolExecutor(self.size, thread_name_prefix="delight-engine")
            if self.size > 1
            else None
        )

    def translate(self, src_tokens: Tensor, src_lengths: Tensor) -> List[List[int]]:
        """One batch on an idle engine (``Engine.translate``)."""
        engine = self._idle.get()
        try:
            return engine.translate(src_tokens, src_lengths)
        finally:
            self._idle.put(engine)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn`` over ``items``, up to ``size`` at once; results in input order."""
        if self._threads is None:
            return map(fn, items)
        return self._threads.map(fn, items)
