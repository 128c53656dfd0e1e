"""MatSeg-format datasets as WebDataset-style tar shards with an index.

Layout of a shard folder::

    SHARDS/index.json            {"format": "matseg-shards", "version": 1, "shards": [...]}
    SHARDS/shard-000000.tar      members "<key>.<file name>", e.g. "000012.RGB__RGB.jpg",
    SHARDS/shard-000001.tar      "000012.mask001.png", "1/1.meta.json" (key = the sample's
    ...                          path in the dataset; WebDataset groups members by key)

``index.json`` lists, per shard, its file, size and sha256 and, per sample, the offset and size
of every member, so a sample is read with one seek per file (random access: the trainer's
seeded batch stream and its exact resume work on shards as on folders). Shards are plain tar
files: ``tar -x`` unpacks them, WebDataset reads them. A shard is written whole to a temporary
name and renamed, the index after every shard, so an interrupted ``pack`` resumes where it
stopped; packing is deterministic (same samples, same bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from matseg.io.atomic import json_bytes, load_json, write_bytes_atomic, write_folder
from matseg.io.dataset import (
    FINISHED_NAME,
    DatasetFormatError,
    RawSample,
    SampleFile,
    SampleRef,
    find_samples,
    raw_sample_from_files,
)

INDEX_NAME = "index.json"
FORMAT = "matseg-shards"
VERSION = 1


class ShardFormatError(DatasetFormatError):
    """A shard folder or shard file is not readable as written by ``matseg shards pack``."""


def is_url(location: str | os.PathLike) -> bool:
    """Whether a shard folder is given as an fsspec URL (``s3://bucket/shards``, ``file:///data``)."""
    return "://" in str(location)


def _open(location: str, mode: str = "rb"):
    """A local file, or any fsspec URL when the fsspec package is installed."""
    if not is_url(location):
        return open(location, mode)
    try:
        import fsspec
    except ImportError:
        raise ShardFormatError(f"{location}: reading URLs needs fsspec (pip install fsspec, plus its s3fs/gcsfs/... plug-in)") from None
    return fsspec.open(location, mode).open()


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_url(root) else str(Path(root, *parts))


def is_shard_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a folder or an fsspec URL) holds a shard ``index.json``."""
    if not is_url(path) and not (Path(path) / INDEX_NAME).is_file():
        return False
    try:
        with _open(_join(str(path), INDEX_NAME), "rb") as fh:
            head = fh.read(200).decode("utf-8", "replace")
    except (OSError, ShardFormatError):
        return False
    return f'"{FORMAT}"' in head


def _sample_key(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return folder.name if rel == "." else rel


def _folder_files(folder: Path) -> dict[str, bytes]:
    """A sample folder's files; ``Finished.txt`` left out (a packed sample is finished by construction)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.lower() != FINISHED_NAME.lower()
    }


def shard_bytes(samples: list[tuple[str, dict[str, bytes]]]) -> tuple[bytes, list[dict]]:
    """One deterministic tar (sorted members, fixed metadata) of ``[(key, {file name: bytes})]``
    and its sample records (member offsets and sizes)."""
    buf = io.BytesIO()
    records = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, files in samples:
            members = {}
            for name in sorted(files):
                data = files[name]
                info = tarfile.TarInfo(f"{key}.{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                header_at = tar.offset
                tar.addfile(info, io.BytesIO(data))
                # A USTAR header is one 512-byte block (no extension records in this format).
                members[name] = [header_at + tarfile.BLOCKSIZE, len(data)]
            records.append({"key": key, "members": members})
    return buf.getvalue(), records


def write_shard(out: str | os.PathLike, name: str, samples: list[tuple[str, dict[str, bytes]]], extra: dict | None = None) -> dict:
    """Write ``out/<name>.tar`` and then its record ``out/<name>.json`` (both atomically): a
    generator writing shards directly (``synth2d --shard-size``) calls this once per shard; the
    record's presence means the shard is complete. Returns the record."""
    out = Path(out)
    data, records = shard_bytes(samples)
    write_bytes_atomic(out / f"{name}.tar", data)
    record = {**_shard_entry(f"{name}.tar", data, records), **(extra or {})}
    write_bytes_atomic(out / f"{name}.json", json_bytes(record, indent=None))
    return record


def _shard_entry(file: str, data: bytes, records: list[dict]) -> dict:
    """A shard's entry in ``index.json``: file name, size, content hash and sample records."""
    return {"file": file, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "samples": records}


def _write_index(out: Path, samples_per_shard: int, shards: list[dict]) -> dict:
    """Write ``out/index.json`` listing ``shards`` (their entries) and return it."""
    index = {"format": FORMAT, "version": VERSION, "samples_per_shard": samples_per_shard,
             "samples": sum(len(s["samples"]) for s in shards), "shards": shards}  # fmt: skip
    write_bytes_atomic(out / INDEX_NAME, json_bytes(index, indent=None))
    return index


def shard_done(out: str | os.PathLike, name: str) -> bool:
    return (Path(out) / f"{name}.json").is_file() and (Path(out) / f"{name}.tar").is_file()


class SceneShards:
    """The shard layout of a generator writing ``num_scenes`` scenes, ``size`` per shard
    (``synth2d``/``synth3d --shard-size``): shard ``i`` holds scenes ``[i*size, (i+1)*size)``
    under their usual names, so a shard run makes the scenes a folder run makes."""

    def __init__(self, out_dir: str | os.PathLike, num_scenes: int, size: int, digits: int):
        self.out_dir, self.num_scenes, self.size, self.digits = Path(out_dir), num_scenes, size, digits

    def names(self) -> list[str]:
        return [f"shard-{i:06d}" for i in range(-(-self.num_scenes // self.size))]

    def done(self, name: str) -> bool:
        return shard_done(self.out_dir, name)

    def write(self, shard: int, make_scene, skip: tuple[type[Exception], ...]) -> list[str]:
        """Make the scenes of shard ``shard`` with ``make_scene(index) -> ({file: bytes}, warnings)``
        and write the shard; a scene raising one of ``skip`` is left out and listed. Returns the
        warnings (prefixed with the scene name)."""
        samples, warnings, failed = [], [], {}
        for index in range(shard * self.size, min(self.num_scenes, (shard + 1) * self.size)):
            key = f"{index:0{self.digits}d}"
            try:
                files, scene_warnings = make_scene(index)
            except skip as exc:
                failed[key] = str(exc)
                warnings.append(f"scene {key} left out: {exc}")
                continue
            samples.append((key, files))
            warnings += [f"{key}: {w}" for w in scene_warnings]
        write_shard(self.out_dir, self.names()[shard], samples, {"failed": failed})
        return warnings

    def finish(self) -> dict:
        """``index.json`` of every finished shard (after each run)."""
        return build_index(self.out_dir, self.size)


def build_index(out: str | os.PathLike, samples_per_shard: int) -> dict:
    """Assemble ``out/index.json`` from the shard records ``out/shard-*.json`` (name order)."""
    out = Path(out)
    shards = []
    for record_file in sorted(out.glob("shard-*.json")):
        record = load_json(record_file, ShardFormatError, "shard record")
        shards.append({k: record[k] for k in ("file", "size", "sha256", "samples")})
    return _write_index(out, samples_per_shard, shards)


def pack(root: str | os.PathLike, out: str | os.PathLike, samples_per_shard: int = 1000, progress=None) -> dict:
    """Pack every finished sample under ``root`` (nested ones included) into shards in ``out``.

    Resumable: shards already listed in ``out/index.json`` with the expected samples and size are
    kept. Returns the index. ``progress``: optional callable(shards done, shards total).

    Raises:
        ValueError: ``samples_per_shard`` < 1, or ``root`` holds no finished sample.
    """
    root, out = Path(root), Path(out)
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    folders = find_samples(root)
    if not folders:
        raise ValueError(f"{root}: no finished MatSeg samples to pack")
    groups = [folders[i : i + samples_per_shard] for i in range(0, len(folders), samples_per_shard)]
    previous = {s["file"]: s for s in _read_index(out)["shards"]} if is_shard_folder(out) else {}
    shards = []
    for i, group in enumerate(groups):
        name = f"shard-{i:06d}.tar"
        keys = [_sample_key(root, f) for f in group]
        old = previous.get(name)
        if old and [s["key"] for s in old["samples"]] == keys and (out / name).is_file() and (out / name).stat().st_size == old["size"]:
            shards.append(old)
        else:
            data, records = shard_bytes([(_sample_key(root, f), _folder_files(f)) for f in group])
            write_bytes_atomic(out / name, data)
            shards.append(_shard_entry(name, data, records))
        index = _write_index(out, samples_per_shard, shards)
        if progress:
            progress(i + 1, len(groups))
    return index


def _read_index(folder: str | Path) -> dict:
    path = _join(str(folder), INDEX_NAME)
    try:
        with _open(path) as fh:  # a local file or an fsspec URL alike
            index = json.loads(fh.read().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardFormatError(f"{path}: not a readable shard index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("shards"), list):
        raise ShardFormatError(f"{path}: not a matseg shard index (format {FORMAT!r} expected)")
    if index.get("version", 0) > VERSION:
        raise ShardFormatError(f"{path}: shard index version {index['version']} is newer than this matseg reads ({VERSION})")
    return index


@dataclass(frozen=True)
class ShardSample(SampleRef):
    """One sample inside a shard folder; ``read_raw()`` reads it with one seek per member."""

    root: str  # absolute folder or fsspec URL
    shard: str
    key: str
    members: tuple[tuple[str, int, int], ...]  # (file name, offset, size)
    shard_sha256: str = ""

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def path(self) -> Path:
        return Path(_join(self.root, self.shard, self.key))

    def relative_name(self) -> str:
        return self.key

    def version(self) -> str:
        return self.shard_sha256

    def __str__(self) -> str:
        return f"{_join(self.root, self.shard)}:{self.key}"

    def read_files(self) -> dict[str, bytes]:
        path = _join(self.root, self.shard)
        out = {}
        try:
            with _open(path, "rb") as fh:
                for name, offset, size in self.members:
                    fh.seek(offset)
                    data = fh.read(size)
                    if len(data) != size:
                        raise ShardFormatError(f"{path}: member {self.key}.{name} is truncated (shard shorter than its index says)")
                    out[name] = data
        except FileNotFoundError:
            raise ShardFormatError(f"{path}: shard file missing (listed in {_join(self.root, INDEX_NAME)})") from None
        return out

    def read_raw(self) -> RawSample:
        files = {name.lower(): SampleFile(self.path / name, data) for name, data in self.read_files().items()}
        return raw_sample_from_files(self.path, files)


def shard_samples(folder: str | os.PathLike) -> list[ShardSample]:
    """Every sample of a shard folder (a path, or an fsspec URL), in packing order (the dataset's
    natural order)."""
    root = str(folder).rstrip("/") if is_url(folder) else str(Path(folder).resolve())
    out = []
    for shard in _read_index(root)["shards"]:
        for rec in shard["samples"]:
            members = tuple((name, int(off), int(size)) for name, (off, size) in sorted(rec["members"].items()))
            out.append(ShardSample(root, shard["file"], rec["key"], members, shard.get("sha256", "")))
    return out


def unpack(shards: str | os.PathLike, out: str | os.PathLike, progress=None) -> int:
    """Write every sample of a shard folder back as a sample folder under ``out`` (atomic per
    sample, ``Finished.txt`` last); finished folders are skipped. Returns the samples written."""
    from matseg.io.dataset import is_finished

    written = 0
    samples = shard_samples(shards)
    for i, sample in enumerate(samples):
        target = Path(out) / sample.key
        if not is_finished(target):
            write_folder(target, sample.read_files(), marker=FINISHED_NAME)
            written += 1
        if progress:
            progress(i + 1, len(samples))
    return written
