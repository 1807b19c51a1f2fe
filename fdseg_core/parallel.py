"""Independent runs at once: one process per run, on the CPU threads or GPUs there are.

:func:`parallel_map` serves ``fdseg experiment --jobs N`` and ``fdseg train --folds-all
--jobs N``. Each worker is a fresh process (``spawn``: no CUDA state or thread pool is
inherited) that takes ``cores // N`` CPU threads, or one of the visible GPUs when there
are as many as workers, and runs one item at a time. Grids on a cluster go through the
scheduler instead (job arrays with ``--shard``, or :mod:`fdseg_core.experiment.slurm`).

This module imports only :mod:`fdseg_core.errors` (and torch in the workers); every
layer may use it.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from fdseg_core.errors import OptionError

__all__ = ["in_shard", "parallel_map", "parse_shard", "worker_resources"]


def worker_resources(jobs: int, *, cpus: int | None = None, gpus: int | None = None) -> dict:
    """How ``jobs`` workers share this machine.

    Args:
        jobs: Workers.
        cpus: CPU cores (default: those this process may use).
        gpus: Visible CUDA devices (default: counted, without initialising CUDA here).

    Returns:
        ``{"threads": per-worker CPU threads, "gpus": [device index per worker] or
        None}``: GPUs are given one per worker when there are at least as many as
        workers, else the workers share the CPU.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if gpus is None:
        gpus = _visible_gpus()
    threads = max(1, int(cpus or 1) // jobs)
    return {"threads": threads, "gpus": list(range(jobs)) if gpus >= jobs > 0 else None}


def _visible_gpus() -> int:
    import torch  # lazy: the worker plan is made before any run imports torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _init_worker(threads: int, gpu_queue) -> None:
    """A worker's share: its threads, and its GPU when each worker has one."""
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch  # lazy: set before torch starts its thread pool in this process

    torch.set_num_threads(threads)


def parallel_map(
    func: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any], *, jobs: int
) -> Iterator[Any]:
    """``func(shared, item)`` for every item, ``jobs`` processes at once, yielding the
    results as they finish (in any order).

    Args:
        func: A module-level function (it is pickled to the workers).
        shared: The first argument of every call (a configuration).
        items: The second argument of each call.
        jobs: Worker processes.

    Raises:
        Whatever a call raised, when its result is reached (the other calls finish
        first; a worker holds its run's lock until it ends).
    """
    plan = worker_resources(jobs)
    ctx = multiprocessing.get_context("spawn")
    queue = None
    if plan["gpus"] is not None:
        queue = ctx.Manager().Queue()
        for gpu in plan["gpus"]:
            queue.put(gpu)
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(plan["threads"], queue),
    ) as pool:
        futures = [pool.submit(func, shared, item) for item in items]
        for future in as_completed(futures):
            yield future.result()


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``: shard K of N takes the runs whose
    index ``i`` has ``i % N == K - 1`` (``--shard $((SLURM_ARRAY_TASK_ID + 1))/N``).

    Raises:
        OptionError: Not of that form, naming ``shard`` and the value.
    """
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise OptionError(f"{{shard}} {text!r}: expected K/N with 1 <= K <= N, e.g. 1/4", "shard")
    return k, n


def in_shard(runs: list, shard: tuple[int, int] | None) -> list:
    """The items of shard ``(K, N)`` (all of them without one): those at positions
    ``i`` with ``i % N == K - 1``."""
    if shard is None:
        return list(runs)
    k, n = shard
    return [r for i, r in enumerate(runs) if i % n == k - 1]
