"""Keep the memory a CPU net frees inside the process instead of handing it back to the kernel.

glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with
a fresh ``mmap`` and unmaps it again on ``free``. A forward and backward pass allocates and frees
dozens of activations of 5-60 MB, so every step pays a page fault per 4 KiB page and the kernel
zeroes each page again: on 2 AVX2 cores in fp32 one training step of the default recipe spent
about 15 % of its time there, and a 512² prediction about 30 % (docs/benchmarks.md).
:func:`keep_freed_memory` switches that off for the process: large blocks come from the heap and
freed ones are reused. The cost is that the process keeps its peak memory until it exits, which
a training or inference process reaches again at every step anyway.

Set the environment variable ``MATSEG_KEEP_FREED_MEMORY=0`` to leave the C library alone (the
setting is process-wide); glibc's own ``MALLOC_*`` variables, when set, are respected likewise.

Even reused, a block that a new crop shape does not fit is taken fresh from the kernel, 4 KiB
page by page (a 68 MB activation: 16,600 page faults, 26 ms to allocate and fill).
:func:`prefer_huge_pages` asks PyTorch's CPU allocator for transparent huge pages for tensors of
2 MB and more (its ``THP_MEM_ALLOC_ENABLE``): 2 MiB pages, about 250 faults and 5 ms for the same
block, and the recipe trains 5-12 % faster with bitwise the same results (docs/benchmarks.md).
PyTorch reads that variable once, when the process makes its first tensor, so the ``matseg``
command sets it at start; a value the user set (``THP_MEM_ALLOC_ENABLE=0``) is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

logger = logging.getLogger(__name__)

#: Environment variable that turns :func:`keep_freed_memory` off when set to 0.
OPT_OUT_VARIABLE = "MATSEG_KEEP_FREED_MEMORY"
#: glibc tunables that mean the user chose the allocator's behaviour already.
_GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

#: PyTorch's switch for transparent huge pages in its CPU allocator (c10 ``alloc_cpu``).
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (no ``mmap`` per large block, no trimming).

    Called by :class:`matseg.net.train.Trainer` and :class:`matseg.net.infer.Predictor` on the
    CPU. Idempotent and process-wide; does nothing outside Linux with glibc, when
    ``MATSEG_KEEP_FREED_MEMORY=0`` is set, or when a ``MALLOC_*`` tunable of glibc is set.

    Returns:
        True when the setting is in effect (now or from an earlier call), else False.
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(OPT_OUT_VARIABLE, "").strip() == "0":
        return False
    if any(name in os.environ for name in _GLIBC_VARIABLES):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success. A trim threshold of -1 turns trimming off (mallopt(3)).
    applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1
    if applied:
        logger.debug("glibc malloc: no mmap per large block, no trimming (%s=0 turns this off)", OPT_OUT_VARIABLE)
    return applied


def prefer_huge_pages() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` unless the environment already names a value (Linux only).

    PyTorch then aligns every CPU tensor of 2 MB or more to 2 MiB and marks it for transparent
    huge pages (``madvise``). It reads the variable when the process makes its first tensor and
    never again, so this only takes effect when called before that: the ``matseg`` command calls
    it first thing; :class:`~matseg.net.infer.Predictor` and :class:`~matseg.net.train.Trainer`
    call it too (which helps where they make the process's first tensors). In your own Python
    program, set the variable before creating tensors.

    Returns:
        True when the variable is ``1`` after the call (in effect if no tensor existed before).
    """
    if not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")
    return os.environ[HUGE_PAGES_VARIABLE] == "1"
