"""Photos named on a command line (files and folders) as uniquely named work items.

Shared by the batch stages that take photos: ``matseg textures extract``, ``matseg predict`` and
``matseg segment``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matseg.io.images import IMAGE_EXTENSIONS, list_images


@dataclass(frozen=True)
class InputImage:
    """One photo to process: its file and its output name below ``OUT`` (posix, unique; a folder
    for textures, the prefix of the output files for predict and segment)."""

    path: Path
    name: str


def find_inputs(paths: list[str | Path], exclude: str | Path | None = None) -> list[InputImage]:
    """Photos named on the command line: files as given, folders searched recursively.

    Folder contents are filtered by extension (hidden files and folders are skipped); a file
    named explicitly is taken whatever its extension (a non-image fails later, as that item).
    Files under ``exclude`` (the output folder, if it lies inside an input folder) are skipped.
    Output names are the path below the input folder without extension; clashes (``a.jpg``
    and ``a.png``, or ``a.jpg`` and ``a/b.jpg``) get the extension appended.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no image file found at all.
    """
    exclude = Path(exclude).resolve() if exclude is not None else None
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if path.is_dir():
            for p in list_images(path):
                if exclude is not None and p.resolve().is_relative_to(exclude):
                    continue
                found.append((p, p.relative_to(path).with_suffix("").as_posix()))
        else:
            found.append((path, path.stem))
    if not found:
        raise ValueError(
            f"no image files found in {', '.join(str(p) for p in paths)} "
            f"(looked for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
        )
    # A name may not be taken twice, nor be the folder of another name (a.jpg and a/b.jpg).
    folders = {parent.as_posix() for _, name in found for parent in Path(name).parents}
    inputs, taken = [], set()
    for path, name in found:
        if name in taken or name in folders:
            name = f"{name}_{path.suffix[1:].lower()}"
        base, i = name, 2
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        inputs.append(InputImage(path, name))
    return inputs
