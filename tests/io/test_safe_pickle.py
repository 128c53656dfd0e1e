import collections
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest

from matseg.io.safe_pickle import UnsafePickleError, load_plain_pickle, loads_plain_pickle

PUBLISHED = Path("/work/shared/data/matseg_train_sample")


class Evil:
    """Pickles to ``os.system("touch <marker>")``: unpickling it with plain pickle runs a shell."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


PLAIN = {
    "str": "x",
    "bytes": b"\x00\xff",
    "ints": [1, -2, 2**70],
    "float": 1.5,
    "complex": 1 + 2j,
    "bool": True,
    "none": None,
    "tuple": (1, "a"),
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "bytearray": bytearray(b"ab"),
    "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
    "nested": {"mask001.png": {"mode": "bsdf", "data": {"Base Color": [0.1, 0.2, 0.3, 1.0]}}},
}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips_in_every_protocol(tmp_path, protocol):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(PLAIN, protocol=protocol))
    loaded = load_plain_pickle(path)
    assert loaded == PLAIN
    assert type(loaded["ordered"]) is collections.OrderedDict


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"scene": Evil(marker)})
    path = tmp_path / "scene_data.pkl"
    path.write_bytes(payload)

    with pytest.raises(UnsafePickleError) as info:
        load_plain_pickle(path)
    assert not marker.exists()
    msg = str(info.value)
    assert str(path) in msg and "system" in msg

    # Control: the payload is real, the ordinary unpickler does run it.
    pickle.loads(payload)
    assert marker.exists()


@pytest.mark.parametrize("name", ["eval", "exec", "getattr", "__import__", "open", "type"])
def test_dangerous_builtins_are_refused(name):
    data = f"cbuiltins\n{name}\n.".encode()  # protocol-0 GLOBAL opcode only
    with pytest.raises(UnsafePickleError, match=f"builtins.{name}"):
        loads_plain_pickle(data, source="test.pkl")


@pytest.mark.parametrize("obj", [np.zeros(3), np.float64(1.0), np.int32(3)], ids=["array", "float64", "int32"])
def test_numpy_objects_are_refused(obj):
    with pytest.raises(UnsafePickleError, match="numpy"):
        loads_plain_pickle(pickle.dumps({"x": obj}))


def test_corrupt_pickle_names_the_file(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps(PLAIN)[:-10])
    with pytest.raises(pickle.UnpicklingError, match="broken.pkl"):
        load_plain_pickle(path)


def test_published_scene_data_loads():
    path = PUBLISHED / "0" / "scene_data.pkl"
    if not path.exists():
        pytest.skip(f"published sample data not available at {PUBLISHED}")
    data = load_plain_pickle(path)
    assert isinstance(data, dict) and "mask001.png" in data
    assert data["mask001.png"]["mode"] in ("pbr", "bsdf")
