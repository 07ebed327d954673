"""``fork_map``: a function over a few items in forked worker processes (the sweep's coding workers,
its fold fits).

A forked child inherits the parent's memory copy-on-write, so ``fn`` may be a closure over large
arrays, fitted codecs and compiled code: only the items and the results are pickled. The closure
itself does not pickle, so it waits in a module slot that the pool's children inherit when they fork.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

_TASK: dict = {}                 # the function the children call, set before the pool forks


def _call(item):
    return _TASK["fn"](item)


def fork_map(fn, items, processes: int) -> list:
    """``[fn(item) for item in items]``, computed in ``processes`` forked processes, in item order."""
    items = list(items)
    _TASK["fn"] = fn
    try:
        with ProcessPoolExecutor(processes, mp_context=mp.get_context("fork")) as ex:
            return list(ex.map(_call, items))
    finally:
        _TASK.clear()
