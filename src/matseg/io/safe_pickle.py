"""Loading pickles that should contain nothing but plain Python data.

The published MatSeg data ships metadata as pickles (``scene_data.pkl``, benchmark
``data.pkl``). Unpickling runs whatever callables a file names, so a downloaded pickle is
code. :func:`load_plain_pickle` uses an :class:`pickle.Unpickler` whose ``find_class``
admits only the handful of builtin types that plain data needs; any other global
(``os.system``, ``numpy`` arrays and scalars, user classes, ...) is refused *before* it is
looked up, so nothing from the file is ever executed.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

__all__ = ["UnsafePickleError", "load_plain_pickle", "loads_plain_pickle", "ALLOWED_GLOBALS"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the plain-data allow-list; the message names file and global."""


# Plain containers and scalars. Most of them are built by dedicated opcodes and never reach
# find_class; they are listed because older protocols (0-2) rebuild sets, frozensets,
# complex numbers and bytearrays by calling the type.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", name)
        for name in (
            "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
            "int", "float", "complex", "bool", "NoneType",
        )
    }
    | {
        ("collections", "OrderedDict"),
        # Protocols 0-2 store ``bytes`` as ``_codecs.encode(text, "latin1")``.
        ("_codecs", "encode"),
    }
)


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        # Python-2 pickles say "__builtin__"; the base class maps that (fix_imports) only
        # inside its own find_class, so normalise here before the allow-list test.
        mod = "builtins" if module == "__builtin__" else module
        if (mod, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refused global {module}.{name} "
                "(only plain Python data may be unpickled)"
            )
        return super().find_class(mod, name)


def loads_plain_pickle(data: bytes, source: str = "<bytes>") -> object:
    """Unpickle ``data`` that may contain only plain Python data.

    Args:
        data: pickle bytes (any protocol).
        source: name used in error messages (usually the file path).

    Returns:
        The unpickled object made of dict/list/tuple/set/frozenset/str/bytes/int/float/
        complex/bool/None and ``collections.OrderedDict``.

    Raises:
        UnsafePickleError: the pickle references any other global (nothing is executed).
        pickle.UnpicklingError: the data is not a valid pickle (message names ``source``).
    """
    try:
        return _PlainUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise pickle.UnpicklingError(f"{source}: not a valid plain-data pickle ({type(exc).__name__}: {exc})") from None


def load_plain_pickle(path: str | os.PathLike) -> object:
    """Read a pickle file that may contain only plain Python data (see :func:`loads_plain_pickle`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the file references a non-allowed global (message names file and global).
        pickle.UnpicklingError: the file is truncated or not a pickle.
    """
    path = Path(path)
    return loads_plain_pickle(path.read_bytes(), source=str(path))
