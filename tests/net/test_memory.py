"""matseg.net.memory: glibc keeps large freed blocks once keep_freed_memory ran (each case in a fresh
process, since the setting is process-wide)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from matseg.net.memory import HUGE_PAGES_VARIABLE

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
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("MATSEG_KEEP_FREED_MEMORY", HUGE_PAGES_VARIABLE)}
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


# Page faults of making and filling a 64 MiB tensor, after prefer_huge_pages() and before any other tensor.
HUGE_PAGES_PROBE = r"""
import json, os, resource
from matseg.net.memory import prefer_huge_pages
prefer_huge_pages()
import torch
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(16 << 20).fill_(1.0)
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, "variable": os.environ["THP_MEM_ALLOC_ENABLE"]}))
"""


def _huge_pages_probe(**env: str) -> dict:
    pytest.importorskip("torch", reason="needs the torch extra")
    try:
        mode = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        pytest.skip("no transparent huge pages in this kernel")
    if "[never]" in mode:
        pytest.skip("transparent huge pages are switched off in this kernel")
    out = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROBE], env=_clean_env(**env), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_huge_pages_cut_the_page_faults_of_a_large_tensor():
    with_huge, without = _huge_pages_probe(), _huge_pages_probe(THP_MEM_ALLOC_ENABLE="0")
    assert with_huge["variable"] == "1" and without["variable"] == "0"  # the user's 0 is kept
    # 64 MiB in 4 KiB pages is 16,384 faults; in 2 MiB pages a few dozen (plus torch's own start-up).
    assert without["faults"] > 16_000 and with_huge["faults"] < without["faults"] // 4, (with_huge, without)


def test_the_command_asks_for_huge_pages_first(monkeypatch):
    from matseg.cli import main

    monkeypatch.delenv(HUGE_PAGES_VARIABLE, raising=False)
    assert main(["config", "synth2d"]) == 0
    assert os.environ[HUGE_PAGES_VARIABLE] == "1"
    monkeypatch.setenv(HUGE_PAGES_VARIABLE, "0")
    assert main(["config", "synth2d"]) == 0
    assert os.environ[HUGE_PAGES_VARIABLE] == "0"
