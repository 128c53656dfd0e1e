"""PBR mixing: source choice, modes, normals as vectors, missing properties, and `matseg pbr mix`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from matseg.cli import main
from matseg.materials.mix import (
    MixConfig,
    choose_mode,
    choose_sources,
    mix_materials,
    mix_normals,
    mix_size,
    normalized_weights,
)
from matseg.materials.pbr import PBRMaterial, PBRReport, normal_to_vectors, read_pbr, vectors_to_normal, write_pbr

SHARED_PBR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pbr"


def _material(seed: int, size: int = 32, props=("color", "normal", "height", "roughness", "metallic")) -> PBRMaterial:
    rng = np.random.default_rng(seed)
    maps = {}
    for p in props:
        if p == "normal":
            maps[p] = vectors_to_normal(rng.normal(size=(size, size, 3)) * (0.3, 0.3, 1.0) + (0, 0, 1.5))
        elif p == "color":
            maps[p] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        else:
            maps[p] = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return PBRMaterial(f"m{seed}", maps, PBRReport(f"m{seed}"))


def test_choose_sources_distinct_and_geometric():
    cfg = MixConfig()
    counts = {}
    for seed in range(2000):
        idx = choose_sources(6, np.random.default_rng(seed), cfg)
        assert len(idx) == len(set(idx)) >= 2 and all(0 <= i < 6 for i in idx)
        counts[len(idx)] = counts.get(len(idx), 0) + 1
    assert abs(counts[2] / 2000 - 0.5) < 0.04 and abs(counts[3] / 2000 - 0.25) < 0.04
    assert choose_sources(2, np.random.default_rng(0), cfg) == [0, 1]
    limited = MixConfig(p_more_sources=0.99, max_sources=3)
    assert {len(choose_sources(10, np.random.default_rng(s), limited)) for s in range(50)} <= {2, 3}
    with pytest.raises(ValueError, match="at least 2 materials, got 1"):
        choose_sources(1, np.random.default_rng(0), cfg)


def test_mode_probabilities():
    cfg = MixConfig()
    modes = [choose_mode(np.random.default_rng(s), cfg) for s in range(3000)]
    assert abs(modes.count("equal") / 3000 - 0.28) < 0.03 and abs(modes.count("max") / 3000 - 0.27) < 0.03
    with pytest.raises(ValueError, match="p_equal \\+ p_max"):
        MixConfig(p_equal=0.6, p_max=0.6)


def test_weights_sum_to_one():
    w = normalized_weights(np.array([0.2, 0.6, 0.2]))
    np.testing.assert_allclose(w, [0.2, 0.6, 0.2])
    np.testing.assert_allclose(normalized_weights(np.zeros(4)), 0.25)
    with pytest.raises(ValueError, match="finite values >= 0"):
        normalized_weights(np.array([-1.0, 2.0]))


@pytest.mark.parametrize("mode", ["equal", "flexible", "max"])
def test_mixing_identical_materials_is_identity(mode):
    a = _material(0)
    clone = PBRMaterial("clone", {k: v.copy() for k, v in a.maps.items()}, PBRReport("clone"))
    for seed in range(5):
        out, info = mix_materials([a, clone, a], np.random.default_rng(seed), MixConfig(), mode=mode)
        assert info["mode"] == mode
        for prop, m in a.maps.items():
            diff = np.abs(out[prop].astype(int) - m).max()
            assert diff <= (1 if prop == "normal" else 0), (prop, diff)  # normals: re-quantised vectors


def test_weights_are_recorded_and_sum_to_one():
    mats = [_material(1), _material(2)]
    _, eq = mix_materials(mats, np.random.default_rng(0), MixConfig(), mode="equal")
    assert sum(eq["weights"]) == pytest.approx(1.0, abs=1e-5)
    out, fl = mix_materials(mats, np.random.default_rng(0), MixConfig(), mode="flexible")
    assert set(fl["weights"]) == set(out) and all(sum(w) == pytest.approx(1.0, abs=1e-5) for w in fl["weights"].values())
    w = fl["weights"]["roughness"]
    expected = np.rint(w[0] * mats[0].maps["roughness"].astype(float) + w[1] * mats[1].maps["roughness"])
    assert np.abs(out["roughness"] - expected).max() <= 1  # weights are stored rounded to 1e-6


def test_max_mode_is_at_least_every_source():
    mats = [_material(s) for s in (3, 4, 5)]
    out, _ = mix_materials(mats, np.random.default_rng(0), MixConfig(), mode="max")
    for prop in ("color", "height", "roughness", "metallic"):
        for m in mats:
            assert np.all(out[prop] >= m.maps[prop]), prop
        assert np.array_equal(out[prop], np.maximum.reduce([m.maps[prop] for m in mats]))
    # The normal of each pixel is the one of the highest surface there.
    top = np.argmax(np.stack([m.maps["height"] for m in mats]), axis=0)
    expected = np.stack([m.maps["normal"] for m in mats])[top, np.arange(32)[:, None], np.arange(32)]
    np.testing.assert_array_equal(out["normal"], expected)


def test_normals_are_unit_after_mixing():
    mats = [_material(s) for s in (6, 7, 8)]
    for mode in ("equal", "flexible"):
        out, _ = mix_materials(mats, np.random.default_rng(1), MixConfig(), mode=mode)
        decoded = (out["normal"].astype(np.float32) * (2 / 255) - 1)
        np.testing.assert_allclose(np.linalg.norm(decoded, axis=2), 1.0, atol=0.012)  # 8-bit steps
    left = np.full((4, 4, 3), (0, 128, 128), np.uint8)  # (-1, 0, 0)
    right = np.full((4, 4, 3), (255, 128, 128), np.uint8)  # (+1, 0, 0)
    opposite = mix_normals([left, right], weights=np.array([0.5, 0.5]))
    assert np.all(np.abs(opposite.astype(int) - (128, 128, 255)).max(axis=2) <= 1)  # degenerate -> flat
    tilted = mix_normals([left, np.full((4, 4, 3), (128, 128, 255), np.uint8)], weights=np.array([0.5, 0.5]))
    v = normal_to_vectors(tilted)[0, 0]
    assert v == pytest.approx([-np.sqrt(0.5), 0.0, np.sqrt(0.5)], abs=0.02)  # not the RGB average


def test_missing_property_mixes_with_its_default():
    a = _material(9, props=("color", "metallic", "ao"))
    b = _material(10, props=("color",))
    out, info = mix_materials([a, b], np.random.default_rng(0), MixConfig(), mode="equal")
    wa, wb = info["weights"]
    expected = np.rint(wa * a.maps["metallic"].astype(float) + wb * 0)  # metallic default 0
    assert np.abs(out["metallic"] - expected).max() <= 1
    expected_ao = np.rint(wa * a.maps["ao"].astype(float) + wb * 255)  # AO default: unoccluded
    assert np.abs(out["ao"] - expected_ao).max() <= 1
    assert set(out) == {"color", "metallic", "ao"} and info["filled_with_default"] == {"metallic": [1], "ao": [1]}


def test_common_size_is_the_largest_capped():
    assert mix_size([(32, 32), (64, 48), (40, 40)], None) == (64, 48)
    assert mix_size([(512, 512), (2048, 1024)], 1024) == (1024, 512)
    out, info = mix_materials([_material(0, 16), _material(1, 40)], np.random.default_rng(0), MixConfig(max_size=24))
    assert info["size"] == [24, 24] and all(m.shape[:2] == (24, 24) for m in out.values())


# ----------------------------------------------------------------------------- the batch job


def _run(*args: str) -> int:
    return main(["pbr", "mix", "--no-progress", *args])


@pytest.fixture
def pbr_folder(tmp_path) -> Path:
    root = tmp_path / "pbrs"
    for s in range(4):
        write_pbr(root / f"mat{s}", _material(s, 24 + 8 * s).maps)
    return root


def test_job_determinism_resume_and_meta(tmp_path, pbr_folder, output_digest):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(str(pbr_folder), "-o", str(a), "-n", "5", "-w", "1") == 0
    assert _run(str(pbr_folder), "-o", str(b), "-n", "5", "-w", "2") == 0
    assert output_digest(a) == output_digest(b) and len(output_digest(a)) > 0
    for folder in sorted(a.glob("0*")):
        m = read_pbr(folder)
        sources = [s["path"] for s in m.meta["sources"]]
        assert len(sources) == len(set(sources)) >= 2
        sizes = [read_pbr(pbr_folder / p).size for p in sources]
        assert m.size == max(sizes)  # the largest source
        assert m.meta["mix"]["mode"] in ("equal", "max", "flexible")
    # Raising -n extends the set; finished mixes are skipped.
    assert _run(str(pbr_folder), "-o", str(a), "-n", "7", "-w", "1") == 0
    summary = json.loads((a / "summary.json").read_text())
    assert summary["skipped"] == 5 and summary["done"] == 2


def test_job_bad_sources(tmp_path, pbr_folder, capsys):
    assert _run(str(pbr_folder / "mat0"), "-o", str(tmp_path / "one"), "-n", "2") == 2
    assert "need at least 2 PBR material folders, found 1" in capsys.readouterr().err
    assert _run(str(tmp_path / "nope"), "-o", str(tmp_path / "x"), "-n", "1") == 2
    assert "does not exist" in capsys.readouterr().err
    (pbr_folder / "maps_only").mkdir()
    (pbr_folder / "maps_only" / "Roughness.png").write_bytes((pbr_folder / "mat0" / "Roughness.png").read_bytes())
    (pbr_folder / "mat1" / "OriginColor.jpg").write_bytes(b"\xff\xd8\xff broken")
    (pbr_folder / "mat2" / "Roughness.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    rc = _run(str(pbr_folder), "-o", str(out), "-n", "12", "-w", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 1 and summary["failed"] and summary["done"] + len(summary["failed"]) == 12
    assert all("mat1" in f["reason"] and "could be decoded" in f["reason"] for f in summary["failed"])
    assert any("Roughness.png: unreadable map skipped" in w for w in summary["warnings"])
    assert summary["bad_inputs"] == {str(pbr_folder / "maps_only"): "no base-colour map (found roughness)"}


def test_mix_published_pbrs(tmp_path):
    if not SHARED_PBR.is_dir():
        pytest.skip(f"reference data {SHARED_PBR} not available")
    out = tmp_path / "mixed"
    assert _run(str(SHARED_PBR), "-o", str(out), "-n", "3", "-w", "1", "--seed", "4") == 0
    for folder in sorted(out.glob("0*")):
        m = read_pbr(folder)
        assert m.size == (512, 512) and {"color", "normal", "height", "roughness"} <= set(m.maps)
        assert all((SHARED_PBR / s["path"]).is_dir() for s in m.meta["sources"])
    # The outputs are materials themselves and can be mixed again.
    shutil.copytree(out, tmp_path / "again_in")
    assert _run(str(tmp_path / "again_in"), "-o", str(tmp_path / "again"), "-n", "1", "-w", "1") == 0
