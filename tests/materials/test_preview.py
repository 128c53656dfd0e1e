"""The shaded sphere preview: contract, determinism, and that the maps change what is rendered."""

from __future__ import annotations

import numpy as np
import pytest

from matseg.materials.make import normal_from_height
from matseg.materials.preview import BACKGROUND, render_sphere

RED = (200, 30, 30)


def _uniform(color=RED, roughness: int = 128, metallic: int = 0, size: int = 32, **extra) -> dict:
    maps = {"color": np.full((size, size, 3), color, np.uint8),
            "roughness": np.full((size, size), roughness, np.uint8),
            "metallic": np.full((size, size), metallic, np.uint8)}  # fmt: skip
    maps.update({k: np.full((size, size), v, np.uint8) for k, v in extra.items()})
    return maps


def _brightest(img: np.ndarray) -> np.ndarray:
    flat = img.reshape(-1, 3).astype(int)
    return flat[np.argmax(flat.sum(axis=1))]


def test_contract_and_determinism():
    maps = _uniform()
    a = render_sphere(maps, 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_sphere(maps, 96))
    assert np.all(a[0, 0] == BACKGROUND)  # corner: background
    assert abs(int(a[48, 48, 0]) - int(a[48, 48, 2])) > 40  # centre: the red material
    with pytest.raises(ValueError, match="maps\\['color'\\] must be an \\(H, W, 3\\) uint8 array, got float32"):
        render_sphere({"color": np.zeros((4, 4, 3), np.float32)})
    with pytest.raises(ValueError, match="size must be >= 8"):
        render_sphere(maps, 4)


def test_metallic_highlight_takes_the_base_colour():
    dielectric = _brightest(render_sphere(_uniform(roughness=60, metallic=0), 128))
    metal = _brightest(render_sphere(_uniform(roughness=60, metallic=255), 128))
    # A dielectric's highlight is white (F0 = 0.04 for every channel), a metal's takes its colour.
    assert dielectric.min() > 200 and dielectric[1] > 0.9 * dielectric[0]
    assert metal[0] > 200 and metal[1] < 0.75 * metal[0] and metal[2] < 0.75 * metal[0]


def test_smooth_has_a_small_bright_highlight_rough_a_broad_dim_one():
    smooth = render_sphere(_uniform(color=(90, 90, 90), roughness=20), 128).astype(int).sum(axis=2)
    rough = render_sphere(_uniform(color=(90, 90, 90), roughness=230), 128).astype(int).sum(axis=2)
    assert smooth.max() > rough.max() + 150
    bright = 0.8 * smooth.max()
    assert (smooth > bright).sum() < 0.02 * smooth.size
    assert (rough > 0.8 * rough.max()).sum() > 5 * (smooth > bright).sum()


def test_normal_map_and_opacity_change_the_image():
    plain = _uniform(color=(150, 150, 150))
    flat = render_sphere(plain, 64)
    yy, xx = np.indices((64, 64))
    ridges = ((np.sin(xx / 2.0) + 1) * 127).astype(np.uint8)
    bumpy = render_sphere({**plain, "normal": normal_from_height(ridges, 20.0)}, 64)
    assert np.abs(bumpy.astype(int) - flat).mean() > 3
    see_through = render_sphere({**plain, "opacity": np.zeros((32, 32), np.uint8)}, 64)
    inside = (yy - 32) ** 2 + (xx - 32) ** 2 < 20**2
    background = render_sphere({**plain, "opacity": np.zeros((32, 32), np.uint8)}, 64)
    assert see_through[inside].max() <= BACKGROUND + 16 and np.array_equal(see_through, background)
    dark_ao = render_sphere({**plain, "ao": np.zeros((32, 32), np.uint8)}, 64)
    assert dark_ao[inside].sum() < flat[inside].sum()  # ambient term only: darker, not black
