#!/usr/bin/env python3
"""Rebuild the real-photo development set in the MatSeg benchmark layout.

    python recipes/devset/build.py -o OUT [--photos DIR] [--cache DIR] [--offline] [--overlays DIR]

1. Photos: with ``--photos DIR`` an existing output of ``recipes/photos/fetch.py`` (it needs
   ``DIR/manifest.json`` and ``DIR/dev/``) is used as it is; otherwise ``fetch.py --role dev`` is
   run into ``--cache DIR`` (default ``~/.cache/matseg/devset-photos``), which downloads the
   packages once and is a no-op afterwards.
2. For every image listed in ``devset.yaml`` (next to this script): the photo's sha256 is checked
   against both the fetch manifest and ``devset.yaml``, its size against ``devset.yaml``, and the
   annotation in ``annotations/<stem>/`` is validated with matseg's own benchmark readers
   (``matseg.evaluate.benchmark.parse_annotation``, ``matseg.evaluate.relations.read_relations``).
3. ``OUT/images/<stem>.jpg`` (byte copy of the photo), ``OUT/data/<stem>/data.json`` and
   ``group_relations.txt`` (where there are relations) are written into a temporary folder next
   to OUT, which then replaces OUT (an existing OUT is only replaced when this script made it:
   it carries the marker file ``.matseg-devset``).
4. ``--overlays DIR``: one PNG per image, the photo with every annotated disc drawn in its
   material's colour and key number, and a legend with the material names. Use it to check that
   every point lies on the state it is labelled with.

Every problem names the file it is about; exit status 1 on failure, 2 on bad usage. Run with the
project's Python (it needs matseg, numpy and Pillow): ``.venv/bin/python recipes/devset/build.py``.
"""

from __future__ import annotations

import argparse
import io
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FETCH_PY = REPO / "recipes" / "photos" / "fetch.py"
DEVSET_YAML = HERE / "devset.yaml"
ANNOTATIONS = HERE / "annotations"
MARKER = ".matseg-devset"
DEFAULT_CACHE = Path.home() / ".cache" / "matseg" / "devset-photos"

# material colours for overlays (key order), distinct on photos
PALETTE = [
    (255, 40, 40), (40, 140, 255), (255, 230, 0), (0, 220, 90), (255, 0, 255), (0, 230, 230),
    (255, 140, 0), (150, 90, 255),
]


class BuildError(Exception):
    """A failure about one file; the message names it."""


def load_fetch():
    """recipes/photos/fetch.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("matseg_recipes_photos_fetch", FETCH_PY)
    if spec is None or spec.loader is None:
        raise BuildError(f"{FETCH_PY}: cannot be imported")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fetch = load_fetch()


# ----------------------------------------------------------------------------------------------
# devset.yaml and the annotations


def load_devset(path: Path = DEVSET_YAML) -> list[dict]:
    """The image list of devset.yaml (read with fetch.py's YAML subset reader), checked for shape."""
    try:
        data = fetch.load_yaml_subset(path.read_text(encoding="utf-8"), path.name)
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != 1 or not isinstance(data.get("images"), list):
        raise BuildError(f"{path}: expected 'format: 1' and an 'images' list")
    seen = set()
    for img in data["images"]:
        stem = img.get("stem") if isinstance(img, dict) else None
        for key in ("stem", "file", "sha256", "width", "height", "source", "licence", "materials"):
            if not isinstance(img, dict) or img.get(key) in (None, "", []):
                raise BuildError(f"{path}: image {stem or '?'!r} lacks {key!r}")
        if stem in seen:
            raise BuildError(f"{path}: image {stem!r} listed twice")
        seen.add(stem)
        if not isinstance(img["materials"], list) or not all(
            isinstance(m, dict) and m.get("key") and m.get("name") for m in img["materials"]
        ):
            raise BuildError(f"{path}: {stem}: materials must be a list of {{key, name}}")
        for rel in img.get("relations") or []:
            if not isinstance(rel, dict) or not rel.get("group") or not rel.get("reason"):
                raise BuildError(f"{path}: {stem}: relations must be a list of {{group, reason}}")
    return data["images"]


def check_annotation(img: dict, ann_dir: Path = ANNOTATIONS) -> tuple[dict, str | None]:
    """Validate annotations/<stem>/ against devset.yaml with matseg's benchmark readers.

    Returns ``(data.json content, group_relations.txt text or None)``.
    """
    from matseg.evaluate.benchmark import BenchmarkFormatError, parse_annotation, read_annotation
    from matseg.evaluate.relations import RelationsError, read_relations

    folder = ann_dir / img["stem"]
    try:
        data, data_path = read_annotation(folder)
        keys, points, _labels, warnings = parse_annotation(data, str(data_path))
    except BenchmarkFormatError as exc:
        raise BuildError(str(exc)) from None
    if warnings:
        raise BuildError("; ".join(warnings))
    named = [str(m["key"]) for m in img["materials"]]
    if keys != named:
        raise BuildError(f"{data_path}: material keys {keys} differ from devset.yaml {named}")
    w, h = int(img["width"]), int(img["height"])
    x, y, r = points[:, 0], points[:, 1], points[:, 2]
    bad = (x - r < 0) | (y - r < 0) | (x + r > w - 1) | (y + r > h - 1)
    if bad.any():
        i = int(bad.argmax())
        raise BuildError(f"{data_path}: point {points[i].tolist()} has its disc outside the {w}x{h} image")
    rel_path = folder / "group_relations.txt"
    rel_text = None
    if rel_path.is_file():
        try:
            read_relations(rel_path, keys)
        except RelationsError as exc:
            raise BuildError(str(exc)) from None
        rel_text = rel_path.read_text(encoding="utf-8")
        groups = [ln.strip() for ln in rel_text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        listed = [str(rel["group"]).replace(" ", "") for rel in img.get("relations") or []]
        if [g.replace(" ", "") for g in groups] != listed:
            raise BuildError(f"{rel_path}: groups {groups} differ from devset.yaml {listed}")
    elif img.get("relations"):
        raise BuildError(f"{folder}: devset.yaml lists relations but there is no group_relations.txt")
    return data, rel_text


# ----------------------------------------------------------------------------------------------
# overlays


def render_overlay(photo: Path, data: dict, names: dict[str, str], out_png: Path, max_side: int = 1400) -> None:
    """Photo (shrunk to ``max_side``) with every disc outlined in its material's colour, key at the centre."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.open(photo).convert("RGB")
    w, h = im.size
    s = min(1.0, max_side / max(w, h))
    if s < 1.0:
        im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    keys = list(data)
    for i, key in enumerate(keys):
        colour = PALETTE[i % len(PALETTE)]
        for x, y, r in data[key]["pt_im"]:
            cx, cy, rr = (x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5, max(r * s, 2.0)
            box = [cx - rr, cy - rr, cx + rr, cy + rr]
            draw.ellipse([box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1], outline=(0, 0, 0), width=1)
            draw.ellipse(box, outline=colour, width=2)
            draw.text((cx - 3, cy - 6), str(key), fill=colour, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    lines = [f"{key}: {names.get(key, '?')} ({len(data[key]['pt_im'])})" for key in keys]
    lw = max(draw.textlength(t, font=font) for t in lines) + 28
    lh = 14 * len(lines) + 8
    draw.rectangle([4, 4, 4 + lw, 4 + lh], fill=(0, 0, 0))
    for i, t in enumerate(lines):
        draw.rectangle([10, 10 + 14 * i, 20, 20 + 14 * i], fill=PALETTE[i % len(PALETTE)])
        draw.text((26, 9 + 14 * i), t, fill=(255, 255, 255), font=font)
    from matseg.io.atomic import write_bytes_atomic  # honours the umask, unlike mkstemp

    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    write_bytes_atomic(out_png, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# building


def get_photos(args) -> Path:
    """The fetch output folder: --photos as given, or fetch.py --role dev run into the cache."""
    if args.photos is not None:
        photos = args.photos.resolve()
        if not (photos / "manifest.json").is_file():
            raise BuildError(f"{photos / 'manifest.json'}: not found (is --photos an output of recipes/photos/fetch.py?)")
        return photos
    cache = (args.cache or DEFAULT_CACHE).resolve()
    fetch.log(f"fetching the dev photos into {cache}")
    argv = ["-o", str(cache), "--role", "dev"] + (["--offline"] if args.offline else [])
    rc = fetch.main(argv)
    if rc != 0:
        raise BuildError(f"recipes/photos/fetch.py {' '.join(argv)} failed (exit status {rc})")
    return cache


def build(args) -> int:
    images = load_devset()
    photos = get_photos(args)
    manifest = fetch.load_manifest(photos / "manifest.json")
    out = args.out.resolve()
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise BuildError(f"{out}: exists and was not made by this script (no {MARKER}); refusing to replace it")
    errors: list[str] = []
    planned = []
    for img in images:
        stem = img["stem"]
        try:
            rel = img["file"]
            entry = manifest.get(rel)
            photo = photos / rel
            if entry is None:
                raise BuildError(f"{photos / 'manifest.json'}: no record of {rel}")
            if not photo.is_file():
                raise BuildError(f"{photo}: photo missing")
            digest = fetch.sha256_file(photo)
            if digest != entry.get("sha256") or digest != img["sha256"]:
                raise BuildError(
                    f"{photo}: sha256 {digest}, manifest says {entry.get('sha256')}, devset.yaml says {img['sha256']}"
                )
            if (entry.get("width"), entry.get("height")) != (img["width"], img["height"]):
                raise BuildError(
                    f"{photo}: size {entry.get('width')}x{entry.get('height')} in the manifest, "
                    f"devset.yaml says {img['width']}x{img['height']}"
                )
            data, rel_text = check_annotation(img)
            planned.append((img, photo, data, rel_text))
        except BuildError as exc:
            errors.append(str(exc))
            fetch.log(f"  FAILED: {exc}")
    if errors:
        return report(errors)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        (tmp / MARKER).write_text("made by recipes/devset/build.py; replaced whole on every build\n")
        for img, photo, data, rel_text in planned:
            stem = img["stem"]
            dest = tmp / "images" / f"{stem}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, dest)
            if fetch.sha256_file(dest) != img["sha256"]:
                raise BuildError(f"{dest}: copy does not match sha256 {img['sha256']}")
            ddir = tmp / "data" / stem
            ddir.mkdir(parents=True)
            (ddir / "data.json").write_text(json.dumps(data) + "\n", encoding="utf-8")
            if rel_text is not None:
                (ddir / "group_relations.txt").write_text(rel_text, encoding="utf-8")
        umask = os.umask(0)  # mkdtemp made it 0700: give it what a new folder gets (one thread here)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except (BuildError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return report([str(exc)])
    fetch.log(f"wrote {out}: {len(planned)} images, {sum(sum(len(v['pt_im']) for v in d.values()) for _, _, d, _ in planned)} points")

    if args.overlays is not None:
        ov = args.overlays.resolve()
        for img, photo, data, _ in planned:
            names = {str(m["key"]): m["name"] for m in img["materials"]}
            try:
                render_overlay(out / "images" / f"{img['stem']}.jpg", data, names, ov / f"{img['stem']}.png")
            except OSError as exc:
                errors.append(f"{ov / (img['stem'] + '.png')}: {exc}")
        fetch.log(f"overlays in {ov}")
    return report(errors) if errors else 0


def report(errors: list[str]) -> int:
    print(f"\n{len(errors)} error(s):", file=sys.stderr)
    for e in errors:
        print(f"  - {e}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-o", "--out", required=True, type=Path, help="benchmark folder to (re)build")
    ap.add_argument("--photos", type=Path, help="existing output folder of recipes/photos/fetch.py to use")
    ap.add_argument("--cache", type=Path, help=f"where fetch.py puts the photos when --photos is not given (default {DEFAULT_CACHE})")
    ap.add_argument("--offline", action="store_true", help="pass --offline to fetch.py (use only cached archives)")
    ap.add_argument("--overlays", type=Path, help="also write one overlay PNG per image (photo + annotated discs) here")
    args = ap.parse_args(argv)
    if args.photos is not None and (args.cache is not None or args.offline):
        ap.error("--photos uses an existing fetch output; --cache/--offline apply only without it")
    try:
        import matseg.evaluate.benchmark  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is missing; run this with the project's Python (.venv/bin/python)", file=sys.stderr)
        return 2
    try:
        return build(args)
    except BuildError as exc:
        return report([str(exc)])


if __name__ == "__main__":
    sys.exit(main())
