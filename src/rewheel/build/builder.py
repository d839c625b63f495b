"""Building one wheel: the share of cores each build gets and the variables that hand them over."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def compile_parallelism(n: int, workdir: Path) -> dict[str, str]:
    """Variables that let one build run ``n`` compile jobs at once, whatever it is built with.

    setuptools has no variable for it, but reads an extra config file named by
    ``DIST_EXTRA_CONFIG``: ``[build_ext] parallel`` compiles extension modules in parallel.
    """
    cfg = workdir / "rewheel-build-ext.cfg"
    cfg.write_text(f"[build_ext]\nparallel = {n}\n")
    return {
        "MAKEFLAGS": f"-j{n}",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(n),
        "MAX_JOBS": str(n),
        "NPY_NUM_BUILD_JOBS": str(n),
        "CARGO_BUILD_JOBS": str(n),
        "DIST_EXTRA_CONFIG": str(cfg),
    }


class CoreBudget:
    """Hands each build the cores no other build holds, at least one.

    A build alone (a long Cython or numpy build that everything waits for) gets every core; builds
    that start while others run get what is left, so that together they stay near the core count.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self._in_use = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            n = max(1, min(self.cores, self.cores - self._in_use))
            self._in_use += n
            return n

    def give(self, n: int) -> None:
        with self._lock:
            self._in_use -= n
