"""matseg.net.memory: glibc keeps large freed blocks once keep_freed_memory ran (each case in a fresh
process, since the setting is process-wide)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="the setting exists for glibc only"
)

# Counts the blocks glibc serves with their own mmap (mallinfo2().hblks) while a 64 MiB array lives.
PROBE = r"""
import ctypes, json
import numpy as np
from matseg.net.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
if not hasattr(libc, "mallinfo2"):
    print(json.dumps({"skip": "glibc < 2.33 has no mallinfo2"}))
    raise SystemExit
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory()
before = libc.mallinfo2().hblks
block = np.ones(64 << 20, np.uint8)
during = libc.mallinfo2().hblks
del block
print(json.dumps({"applied": applied, "again": keep_freed_memory(), "mmapped_blocks": during - before}))
"""


def _clean_env(**env: str) -> dict:
    """This process's environment without the allocator settings under test, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "MATSEG_KEEP_FREED_MEMORY"}
    return {**clean, **env}


def _probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env=_clean_env(**env), capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


def test_large_blocks_come_from_the_heap_once_applied():
    result = _probe()
    assert result == {"applied": True, "again": True, "mmapped_blocks": 0}


def test_opt_out_variable_leaves_glibc_alone():
    result = _probe(MATSEG_KEEP_FREED_MEMORY="0")
    assert result == {"applied": False, "again": False, "mmapped_blocks": 1}


def test_users_own_glibc_tunables_win():
    # The user asked for mmap above 1 MiB: the call must not override it.
    result = _probe(MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert result == {"applied": False, "again": False, "mmapped_blocks": 1}


def test_predictor_on_the_cpu_applies_it():
    pytest.importorskip("torch", reason="needs the torch extra")
    code = (
        "import matseg.net.memory as m\n"
        "from matseg.net.infer import Predictor\n"
        "from matseg.net.model import DescriptorNet, ModelConfig\n"
        "assert m._applied is None\n"
        "Predictor(DescriptorNet(ModelConfig(pretrained=False)), device='cpu')\n"
        "print(m._applied)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_clean_env())
    assert out.stdout.strip().splitlines()[-1] == "True"
