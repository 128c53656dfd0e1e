"""recipes/photos/fetch.py: the source list, its YAML reader, the .deb/.rcc/wheel readers and an
offline end-to-end run on fake packages (no network, no apt, no pip)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import lzma
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "recipes" / "photos" / "fetch.py"


@pytest.fixture(scope="module")
def fetch():
    spec = importlib.util.spec_from_file_location("photos_fetch", FETCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------
# the committed source list

ALLOWED = ("public-domain", "CC0-1.0", "CC-BY-", "CC-BY-SA-", "BSD-2-clause", "MIT", "no-known-copyright-restrictions")


def test_sources_yaml_is_consistent(fetch):
    sources = fetch.load_sources(FETCH.parent / "sources.yaml")
    files = [(s, f) for s in sources for f in s["files"]]
    dev = [f for _, f in files if f["role"] == "dev"]
    train = [f for _, f in files if f["role"] == "train"]
    assert len(dev) >= 12 and len(train) >= 100
    assert not {f["sha256"] for f in dev} & {f["sha256"] for f in train}
    assert len({f["sha256"] for _, f in files}) == len(files)
    for s, f in files:
        assert f["licence"].startswith(ALLOWED), (s["id"], f["name"], f["licence"])
        assert f.get("licence_source"), (s["id"], f["name"])
        assert len(f["sha256"]) == 64 and int(f["sha256"], 16) >= 0
    assert all(f.get("states") for f in dev)
    for s in sources:
        assert len(s["sha256"]) == 64 and s["licence_files"], s["id"]


def test_yaml_subset_reader(fetch):
    text = (
        "# comment\nformat: 1\nsources:\n  - id: \"a # b\"  # trailing\n    n: 12\n    files:\n"
        "      - name: x\n        ok: true\n      - plain\nempty:\nlist:\n- 1\n- \"two\"\n"
    )
    assert fetch.load_yaml_subset(text) == {
        "format": 1,
        "sources": [{"id": "a # b", "n": 12, "files": [{"name": "x", "ok": True}, "plain"]}],
        "empty": None,
        "list": [1, "two"],
    }
    for bad in ("a: 1\na: 2\n", "a: [1, 2]\n", "a:\n    b: 1\n  c: 2\n", "a: 'x'\n"):
        with pytest.raises(ValueError):
            fetch.load_yaml_subset(bad)


# ---------------------------------------------------------------------------------------------
# fake packages


def make_rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt rcc (format 1) with one folder 'top' holding the given files (name -> (data, zlib?))."""
    names = b""
    name_off = {}
    for n in ["top", *files]:
        name_off[n] = len(names)
        enc = n.encode("utf-16-be")
        names += struct.pack(">HI", len(n), 0) + enc
    data = b""
    data_off = {}
    for n, (payload, compress) in files.items():
        blob = struct.pack(">I", len(payload)) + zlib.compress(payload) if compress else payload
        data_off[n] = len(data)
        data += struct.pack(">I", len(blob)) + blob
    tree = struct.pack(">IHII", 0, 2, 1, 1)  # root: 1 child at index 1
    tree += struct.pack(">IHII", name_off["top"], 2, len(files), 2)
    for n, (_, compress) in files.items():
        tree += struct.pack(">IHHHI", name_off[n], 1 if compress else 0, 0, 0, data_off[n])
    tree_at = 20
    data_at = tree_at + len(tree)
    names_at = data_at + len(data)
    return b"qres" + struct.pack(">4I", 1, tree_at, data_at, names_at) + tree + data + names


def make_deb(members: dict[str, bytes], symlinks: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, target in symlinks.items():
            info = tarfile.TarInfo("./" + name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    data = lzma.compress(buf.getvalue())

    def ar_member(name: str, payload: bytes) -> bytes:
        head = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(payload):<10}`\n".encode()
        return head + payload + (b"\n" if len(payload) % 2 else b"")

    return (
        b"!<arch>\n"
        + ar_member("debian-binary", b"2.0\n")
        + ar_member("control.tar.xz", lzma.compress(b""))
        + ar_member("data.tar.xz", data)
    )


def image_bytes(fmt: str, size=(40, 30), mode="RGB", exif_orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    im = Image.fromarray(arr, mode)
    buf = io.BytesIO()
    kw = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture()
def fake(tmp_path):
    png = image_bytes("PNG", mode="RGBA")
    webp = image_bytes("WEBP")
    plain_jpg = image_bytes("JPEG")
    rotated_jpg = image_bytes("JPEG", size=(40, 30), exif_orientation=6)
    rcc = make_rcc({"pic.webp": (webp, True), "README": (b"License: CC0-1.0\n", False)})
    deb = make_deb(
        {
            "usr/share/p/photo.png": png,
            "usr/share/p/res.rcc": rcc,
            "usr/share/doc/other/copyright": b"Files: *\nLicense: CC0-1.0\n",
        },
        {"usr/share/doc/fake-photos/copyright": "../other/copyright"},
    )
    whl = io.BytesIO()
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("pkg/plain.jpg", plain_jpg)
        z.writestr("pkg/rotated.jpg", rotated_jpg)
        z.writestr("fakewheel-1.0.dist-info/LICENSE", "MIT")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fake-photos_1:2-3_all.deb".replace(":", "%3a")).write_bytes(deb)
    (cache / "fakewheel-1.0-py3-none-any.whl").write_bytes(whl.getvalue())
    q = json.dumps
    yaml = f"""format: 1
sources:
  - id: fake-photos
    kind: debian
    name: fake-photos
    version: "1:2-3"
    archive: "fake-photos_1%3a2-3_all.deb"
    sha256: {q(sha(deb))}
    licence: CC0-1.0
    licence_files:
      - path: usr/share/doc/fake-photos/copyright
      - path: usr/share/p/res.rcc
        member: top/README
    files:
      - name: photo
        role: train
        path: usr/share/p/photo.png
        sha256: {q(sha(png))}
        licence: CC0-1.0
      - name: pic
        role: dev
        path: usr/share/p/res.rcc
        member: top/pic.webp
        sha256: {q(sha(webp))}
        licence: CC0-1.0
        states: "noise vs more noise"
  - id: fakewheel
    kind: pypi
    name: fakewheel
    version: "1.0"
    archive: fakewheel-1.0-py3-none-any.whl
    sha256: {q(sha(whl.getvalue()))}
    licence: MIT
    licence_files:
      - path: fakewheel-1.0.dist-info/LICENSE
    files:
      - name: plain
        role: train
        path: pkg/plain.jpg
        sha256: {q(sha(plain_jpg))}
        licence: MIT
      - name: rotated
        role: train
        path: pkg/rotated.jpg
        sha256: {q(sha(rotated_jpg))}
        licence: MIT
"""
    src = tmp_path / "sources.yaml"
    src.write_text(yaml)
    return {"sources": src, "cache": cache, "out": tmp_path / "out", "plain_jpg": plain_jpg}


def run(fetch, fake, *extra):
    args = ["-o", str(fake["out"]), "--sources", str(fake["sources"]), "--cache", str(fake["cache"]), "--offline"]
    return fetch.main([*args, *extra])


def test_rcc_reader(fetch):
    blob = make_rcc({"a.png": (b"A" * 100, True), "b.txt": (b"bee", False)})
    assert fetch.rcc_files(blob, "t") == {"top/a.png": b"A" * 100, "top/b.txt": b"bee"}


def test_end_to_end_offline(fetch, fake, capsys):
    out = fake["out"]
    assert run(fetch, fake) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 3, "dev": 1}
    files = {e["file"]: e for e in manifest["files"]}
    assert set(files) == {
        "train/fake-photos__photo.jpg",
        "dev/fake-photos__pic.jpg",
        "train/fakewheel__plain.jpg",
        "train/fakewheel__rotated.jpg",
    }
    # plain JPEG copied byte for byte; the others re-encoded, EXIF orientation applied
    assert (out / "train/fakewheel__plain.jpg").read_bytes() == fake["plain_jpg"]
    assert not files["train/fakewheel__plain.jpg"]["reencoded"]
    with Image.open(out / "train/fakewheel__rotated.jpg") as im:
        assert im.format == "JPEG" and im.size == (30, 40)
    with Image.open(out / "train/fake-photos__photo.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (40, 30)
    dev = files["dev/fake-photos__pic.jpg"]
    assert dev["states"] == "noise vs more noise" and dev["original_member"] == "top/pic.webp"
    assert dev["version"] == "1:2-3" and dev["licence"] == "CC0-1.0"
    for rel, e in files.items():
        assert sha((out / rel).read_bytes()) == e["sha256"]
    assert (out / "licenses/fake-photos/usr__share__doc__fake-photos__copyright").read_bytes().startswith(b"Files: *")
    assert (out / "licenses/fake-photos/top__README").exists()
    assert (out / "licenses/fakewheel/fakewheel-1.0.dist-info__LICENSE").read_text() == "MIT"

    # rerun: nothing to do; a damaged output is rewritten
    capsys.readouterr()
    assert run(fetch, fake) == 0
    assert "0 written, 4 already there" in capsys.readouterr().out
    (out / "dev/fake-photos__pic.jpg").write_bytes(b"junk")
    assert run(fetch, fake, "--role", "dev") == 0
    assert "1 written, 0 already there" in capsys.readouterr().out
    manifest2 = json.loads((out / "manifest.json").read_text())
    assert manifest2["counts"] == {"train": 3, "dev": 1}  # train entries kept by a dev-only run


def test_bad_hashes_and_missing_archives_fail(fetch, fake, capsys):
    text = fake["sources"].read_text()
    # a wrong per-file hash: that file fails, the others are written, exit 1
    good = text.split("name: plain")[1].split('sha256: "')[1][:64]
    fake["sources"].write_text(text.replace(good, "0" * 64))
    assert run(fetch, fake) == 1
    err = capsys.readouterr().err
    assert "fakewheel/plain (pkg/plain.jpg): sha256" in err
    assert (fake["out"] / "train/fakewheel__rotated.jpg").exists()
    # a wrong archive hash
    deb_sha = text.split("archive: \"fake-photos_1%3a2-3_all.deb\"")[1].split('sha256: "')[1][:64]
    fake["sources"].write_text(text.replace(deb_sha, "1" * 64))
    assert run(fetch, fake, "--role", "dev") == 1
    assert "not in the cache" in capsys.readouterr().err  # offline: the mismatching copy is dropped, not refetched
    # archive name not matching name/version
    fake["sources"].write_text(text.replace('version: "1.0"', 'version: "1.1"'))
    assert run(fetch, fake) == 2
