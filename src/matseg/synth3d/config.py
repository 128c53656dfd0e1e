"""Parameters of ``matseg synth3d`` (paper §3.1 "Creating 3D scenes", appendix C; digest §1.7).

Pure dataclasses: importable without Blender, so ``matseg config synth3d`` and ``--help``
work everywhere. Defaults are the reference's values (``[§1.7.N]`` = step N of the digest's
per-scene loop) unless marked "ours" (new) or "fixed" (a reference bug, see docs/deviations.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from matseg.config import check_probabilities, option, section
from matseg.synth2d.job import OutputConfig  # the same sample writer settings as the 2D scenes


def _check_range(name: str, pair: list[float], lo: float | None = None, hi: float | None = None) -> None:
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"{name} must be [min, max] with min <= max, got {pair}")
    if lo is not None and pair[0] < lo:
        raise ValueError(f"{name} must be >= {lo}, got {pair}")
    if hi is not None and pair[1] > hi:
        raise ValueError(f"{name} must be <= {hi}, got {pair}")


@dataclass
class Inputs3DConfig:
    """Where materials, maps, lighting and shapes come from."""

    pbr: list[str] = option([], "folders of PBR material folders (each sub-folder one material, or a material folder itself); empty = random Principled BSDFs only", "§1.7.3")
    images: str | None = option(None, "folder of natural photos whose channels make the material maps; null = built-in scikit-image photos", "§1.7.3")
    hdri: str | None = option(None, "folder of HDRI panoramas (.hdr, .exr); null = the studio-light HDRIs shipped inside bpy", "§1.7.5")
    objects: str | None = option(None, "folder of meshes (.obj, .gltf, .glb, .ply, .stl); null = procedural shapes only", "§1.7.2")
    pbr_max_side: int = option(1024, "PBR maps are downscaled to at most this side (px)", "ours")
    image_max_side: int = option(1024, "photos are downscaled to at most this side before they become map textures (px)", "ours")
    cache_mb: int = option(512, "decoded-photo cache per worker process, MiB", "ours")

    def __post_init__(self):
        if self.image_max_side < 16 or self.pbr_max_side < 16:
            raise ValueError(f"image_max_side and pbr_max_side must be >= 16, got {self.image_max_side}, {self.pbr_max_side}")


@dataclass
class ObjectsConfig:
    """The main object(s) that receive the materials, and the shapes of distractors."""

    p_single: float = option(0.5, "probability of one main object (else a group joined into one mesh)", "§1.7.2")
    single_size: list[float] = option([40.0, 60.0], "largest bounding-box side of a single object, uniform range", "§1.7.2")
    p_few: float = option(0.5, "for a group: probability of the 'few' layout (else 'many')", "§1.7.2")
    few_count_max: int = option(6, "'few' layout: 1..N objects", "§1.7.2")
    few_size: list[float] = option([10.0, 60.0], "'few' layout: object size range", "§1.7.2")
    few_xy: float = option(20.0, "'few' layout: x, y uniform in [-v, v]", "§1.7.2")
    few_z: list[float] = option([-2.0, 10.0], "'few' layout: z range (plus U*size/2)", "§1.7.2")
    many_count_max: int = option(11, "'many' layout: 1..N objects", "§1.7.2")
    many_size: list[float] = option([10.0, 30.0], "'many' layout: object size range", "§1.7.2")
    many_xy: float = option(30.0, "'many' layout: x, y uniform in [-v, v]", "§1.7.2")
    many_z: list[float] = option([-5.0, 15.0], "'many' layout: z range (plus U*size/2)", "§1.7.2")
    p_user_mesh: float = option(0.5, "when --objects is given: probability that an object is a user mesh (else a procedural shape)", "ours")
    shapes: list[str] = option(["cube", "sphere", "cylinder", "cone", "torus"], "procedural primitives to choose from", "ours")
    parts_max: int = option(3, "a procedural shape joins 1..N randomly placed primitives", "ours")
    p_displace: float = option(0.7, "probability of a smooth random displacement of a procedural shape", "ours")
    displace_amplitude: list[float] = option([0.02, 0.12], "displacement amplitude, fraction of the shape size", "ours")
    displace_frequency: list[float] = option([1.0, 4.0], "displacement waves per shape size", "ours")
    p_subdivision: float = option(0.5, "probability of a subdivision-surface modifier (level 1) on a procedural shape", "ours")
    uv_island_margin: float = option(0.03, "smart UV project island margin", "§1.7.2")

    def __post_init__(self):
        check_probabilities(self, "p_single", "p_few", "p_user_mesh", "p_displace", "p_subdivision")
        for name in ("single_size", "few_size", "many_size"):
            _check_range(name, getattr(self, name), lo=1e-3)
        for name in ("few_z", "many_z"):
            _check_range(name, getattr(self, name))
        _check_range("displace_amplitude", self.displace_amplitude, lo=0.0)
        _check_range("displace_frequency", self.displace_frequency, lo=0.0)
        if self.few_count_max < 1 or self.many_count_max < 1 or self.parts_max < 1:
            raise ValueError("few_count_max, many_count_max and parts_max must be >= 1")
        from matseg.synth3d.objects import SHAPES  # pure module: no Blender needed

        unknown = sorted(set(self.shapes) - set(SHAPES))
        if not self.shapes or unknown:
            raise ValueError(f"shapes must be a non-empty list of {', '.join(SHAPES)}; unknown: {unknown}")


@dataclass
class MaterialsConfig:
    """Materials in the map regions (digest §1.7 step 3)."""

    count_min: int = option(2, "fewest materials per object", "§1.7.3")
    count_max: int = option(8, "most materials per object (inclusive)", "§1.7.3")
    p_random_count: float = option(0.85, "probability of a uniform count in [count_min, count_max] (else count_min)", "§1.7.3")
    p_pbr: float = option(0.8, "probability that a material is a PBR (when PBR folders are given; else a random Principled BSDF)", "§1.7.3")
    p_camera_coords: float = option(0.7, "per scene: probability that PBR textures use camera coordinates", "§1.7.3")
    p_object_coords: float = option(0.0, "per scene: probability of object coordinates (reference: unreachable branch, so 0); the rest use UV", "§1.7.3, fixed")
    pbr_location_max: float = option(30.0, "texture mapping offset uniform in [0, v] per axis", "§1.7.3")
    pbr_log10_scale: list[float] = option([-2.0, 0.6], "texture mapping scale = 10^U(range)", "§1.7.3")
    p_pbr_axis_scale: float = option(0.4, "probability of independent per-axis scales", "§1.7.3")
    box_blend: float = option(0.02, "box-projection blend of the PBR textures (reference: 0-0.029 per map)", "§1.7")
    p_transparent_bsdf: float = option(0.1, "probability that a random BSDF is of the transparent kind", "§1.7.3")
    displacement: str = option("bump", "how height maps shape the surface (reference run-time material: bump only)", "§1.7", choices=("bump", "displacement", "both"))
    height_scale: float = option(1.0, "Displacement node scale (scene units per unit height)", "§1.7")

    def __post_init__(self):
        if not 1 <= self.count_min <= self.count_max:
            raise ValueError(f"need 1 <= count_min <= count_max, got {self.count_min}, {self.count_max}")
        check_probabilities(self, "p_random_count", "p_pbr", "p_camera_coords", "p_object_coords", "p_pbr_axis_scale", "p_transparent_bsdf")
        if self.p_camera_coords + self.p_object_coords > 1.0 + 1e-9:
            raise ValueError("p_camera_coords + p_object_coords must be <= 1 (the rest is UV)")
        _check_range("pbr_log10_scale", self.pbr_log10_scale)


@dataclass
class SplitsConfig:
    """One split of the material tree: a photo channel through a ramp drives a Mix Shader (paper §3.1)."""

    p_hard: float = option(0.75, "probability of a hard step (else a soft linear ramp)", "§1.7.3")
    hard_range: list[float] = option([0.3, 0.7], "hard step threshold, uniform range", "§1.7.3")
    soft_high_range: list[float] = option([0.4, 0.8], "soft ramp: high threshold uniform range", "§1.7.3")
    soft_width_max: float = option(0.25, "soft ramp: low = high * (1 - v*U)", "§1.7.3")
    color_modes: list[str] = option(["RGB", "HSV", "HSL"], "Separate Color modes to choose from (then one of its 3 channels)", "§1.7.3")
    coordinates: list[str] = option(["generated", "object", "uv"], "texture coordinates of the photo, chosen uniformly", "§1.7.3")
    location_max: float = option(30.0, "photo mapping offset uniform in [0, v] per axis", "§1.7.3")
    log10_scale: list[float] = option([-1.0, 0.2], "photo mapping scale = 10^U(range)", "§1.7.3")
    min_side_fraction: float = option(0.01, "redraw photo/channel/thresholds while either side of the split holds less than this fraction of the photo's pixels", "ours")
    tries: int = option(20, "draws per split before the last one is kept", "ours")

    def __post_init__(self):
        check_probabilities(self, "p_hard", "min_side_fraction")
        _check_range("hard_range", self.hard_range, 0.0, 1.0)
        _check_range("soft_high_range", self.soft_high_range, 0.0, 1.0)
        if not 0.0 <= self.soft_width_max <= 1.0:
            raise ValueError(f"soft_width_max must be in [0, 1], got {self.soft_width_max}")
        bad = sorted(set(self.color_modes) - {"RGB", "HSV", "HSL"})
        if not self.color_modes or bad:
            raise ValueError(f"color_modes must be a non-empty subset of RGB, HSV, HSL; got {self.color_modes}")
        bad = sorted(set(self.coordinates) - {"generated", "object", "uv"})
        if not self.coordinates or bad:
            raise ValueError(f"coordinates must be a non-empty subset of generated, object, uv; got {self.coordinates}")
        if self.tries < 1:
            raise ValueError(f"tries must be >= 1, got {self.tries}")


@dataclass
class WorldConfig:
    """HDRI, ground plane, distractors and lights (digest §1.7 steps 4-7)."""

    p_strength_boost: float = option(0.5, "probability of HDRI strength 1 + U*strength_boost (else 1)", "§1.7.5")
    strength_boost: float = option(1.5, "see p_strength_boost", "§1.7.5")
    p_tilt: float = option(0.5, "probability of tilting the HDRI about x and y", "§1.7.5")
    tilt_max_deg: float = option(45.0, "tilt uniform in [-v, v] degrees", "§1.7.5")
    base_tilt_y_deg: float = option(0.0, "HDRI rotation about y before the tilt (reference: 180 = upside down whenever not tilted)", "§1.7.5, fixed")
    p_ground: float = option(0.25, "probability of a ground plane", "§1.7.4")
    ground_half_size: list[float] = option([40.0, 120.0], "ground plane half-size per axis, uniform range", "§1.7.4")
    ground_displacement: str = option("both", "how the ground's height map shapes it: true displacement of an adaptively subdivided plane plus bump for the finer detail (both, the reference's setting), displacement only, or bump only on a flat quad", "§1.7.4", choices=("bump", "displacement", "both"))
    ground_dicing_px: float = option(2.0, "displaced ground: adaptive subdivision into micropolygons of about this many pixels (smaller = finer relief, slower)", "ours")
    p_distractors: float = option(0.2, "probability of distractor objects", "§1.7.6")
    distractors_max: int = option(8, "1..N distractors", "§1.7.6")
    p_lights: float = option(0.15, "probability of extra point/spot lights", "§1.7.7")
    p_another_light: float = option(0.5, "after each light, probability of one more", "§1.7.7")
    light_box: float = option(9.0, "light position uniform in [-v, v]^3", "§1.7.7")
    light_energy: list[float] = option([20000.0, 500000.0], "light power range, W", "§1.7.7")
    p_spot: float = option(0.5, "probability that a light is a spot (else a point)", "§1.7.7")
    spot_size_deg: list[float] = option([20.0, 120.0], "spot cone angle range, degrees (reference: the radius used as an angle)", "§1.7.7, fixed")
    p_spot_random_direction: float = option(0.4, "probability of a random spot direction (else aimed at the origin)", "§1.7.7, fixed")

    def __post_init__(self):
        check_probabilities(self, "p_strength_boost", "p_tilt", "p_ground", "p_distractors", "p_lights", "p_another_light",
                             "p_spot", "p_spot_random_direction")  # fmt: skip
        if not 0.0 <= self.p_another_light < 1.0:
            raise ValueError("p_another_light must be < 1 (else lights never stop)")
        _check_range("ground_half_size", self.ground_half_size, lo=1e-3)
        if self.ground_dicing_px <= 0:
            raise ValueError(f"ground_dicing_px must be > 0, got {self.ground_dicing_px}")
        _check_range("light_energy", self.light_energy, lo=0.0)
        _check_range("spot_size_deg", self.spot_size_deg, 1.0, 180.0)
        if self.distractors_max < 1:
            raise ValueError("distractors_max must be >= 1")


@dataclass
class CameraConfig:
    """Random camera (digest §1.7 step 8)."""

    radius: list[float] = option([40.0, 100.0], "distance from the origin, uniform range (20*(2+3U))", "§1.7.8")
    elevation_spread: float = option(1.1, "angle from the zenith = (1 - v*U^2) * pi/2", "§1.7.8")
    jitter_y: float = option(10.0, "y offset uniform in [-v, v]", "§1.7.8")
    jitter_z: float = option(20.0, "z offset uniform in [0, v]", "§1.7.8")
    lens_mm: float = option(50.0, "focal length, mm", "§1.7.8")
    sensor_mm: list[float] = option([36.0, 24.0], "sensor width, height (mm); fit AUTO", "§1.7.8")
    min_in_view: float = option(0.5, "redraw the camera while less than this fraction of the main object's vertices is in the frame", "ours")
    tries: int = option(30, "camera draws before the last one is kept", "ours")

    def __post_init__(self):
        _check_range("radius", self.radius, lo=1e-3)
        if not 0.0 <= self.min_in_view <= 1.0:
            raise ValueError(f"min_in_view must be in [0, 1], got {self.min_in_view}")
        if self.tries < 1:
            raise ValueError("tries must be >= 1")


@dataclass
class RenderConfig:
    """Cycles settings. Defaults are CPU-friendly (reference: 1600 px, 120 samples on a GPU)."""

    width: int = option(512, "image width, px (reference: 1600)", "§1.7")
    height: int = option(512, "image height, px (reference: 1600)", "§1.7")
    samples: int = option(32, "Cycles samples per pixel (reference: 120)", "§1.7")
    adaptive_threshold: float = option(0.02, "adaptive-sampling noise threshold; 0 = off (reference: on)", "§1.7")
    denoiser: str = option("oidn", "denoiser of the RGB (never of the masks)", "§1.7", choices=("none", "oidn", "optix"))
    denoise_prefilter: str = option("fast", "denoiser prefilter of its albedo/normal guides", "ours", choices=("none", "fast", "accurate"))
    max_bounces: int = option(8, "total light-path bounces", "ours")
    diffuse_bounces: int = option(3, "diffuse bounces (reference: 4)", "§1.7")
    glossy_bounces: int = option(3, "glossy bounces (reference: 4)", "§1.7")
    transmission_bounces: int = option(6, "transmission bounces", "ours")
    transparent_bounces: int = option(8, "transparent bounces", "ours")
    caustics: bool = option(False, "reflective/refractive caustics (reference: on; noisy on few samples)", "§1.7")
    filter_glossy: float = option(1.0, "glossy filter (blurs caustics, fewer fireflies)", "ours")
    world_map_resolution: int = option(512, "HDRI importance-map resolution (Blender's automatic choice costs ~3 s per scene on one core)", "ours")
    pixel_filter_width: float = option(1.5, "pixel filter width, px (Blackman-Harris); the masks are filtered identically", "ours")
    view_transform: str = option("Standard", "colour view transform of the RGB (reference: Filmic)", "§1.7, fixed", choices=("Standard", "AgX", "Filmic", "Khronos PBR Neutral"))
    look: str = option("None", "colour look of the view transform", "ours")
    device: str = option("cpu", "cpu; gpu (fail without one); auto (GPU when Cycles finds one)", "ours", choices=("cpu", "gpu", "auto"))
    persistent_data: bool = option(True, "keep Cycles render data between the scenes of a worker", "ours")
    threads: int = option(0, "Cycles threads per worker; 0 = the machine's cores divided by the workers", "ours")

    def __post_init__(self):
        if not (8 <= self.width <= 16384 and 8 <= self.height <= 16384):
            raise ValueError(f"width and height must be in 8..16384, got {self.width}x{self.height}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.adaptive_threshold < 0:
            raise ValueError("adaptive_threshold must be >= 0")
        for name in ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces", "transparent_bounces", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.world_map_resolution < 16:
            raise ValueError("world_map_resolution must be >= 16")
        if self.pixel_filter_width <= 0:
            raise ValueError("pixel_filter_width must be > 0")


@dataclass
class QualityConfig:
    """What a scene must show to be written (else it is redrawn with a derived seed)."""

    min_roi_fraction: float = option(0.01, "the main object must cover at least this fraction of the image", "ours")
    min_visible_materials: int = option(2, "materials with weight > 0.5 on max(16, 0.1 % of the ROI) pixels (as `matseg check`)", "ours")
    max_scene_attempts: int = option(3, "scene draws (each one render) before the item is reported failed", "ours")

    def __post_init__(self):
        if not 0.0 <= self.min_roi_fraction <= 1.0:
            raise ValueError("min_roi_fraction must be in [0, 1]")
        if self.min_visible_materials < 0 or self.max_scene_attempts < 1:
            raise ValueError("min_visible_materials must be >= 0 and max_scene_attempts >= 1")


@dataclass
class Synth3DConfig:
    """Everything that defines a synth3d dataset (the resolved copy is saved as config.yaml)."""

    num_scenes: int = option(10, "number of scenes", "ours")
    seed: int = option(0, "master seed; scene i uses derive_seed(seed, i)", "ours")
    inputs: Inputs3DConfig = section(Inputs3DConfig, "input collections")
    objects: ObjectsConfig = section(ObjectsConfig, "main object(s) and shapes (digest §1.7 step 2)")
    materials: MaterialsConfig = section(MaterialsConfig, "materials in the map regions (digest §1.7 step 3)")
    splits: SplitsConfig = section(SplitsConfig, "map splits of the material tree (paper §3.1, digest §1.7 step 3)")
    world: WorldConfig = section(WorldConfig, "HDRI, ground, distractors, lights (digest §1.7 steps 4-7)")
    camera: CameraConfig = section(CameraConfig, "random camera (digest §1.7 step 8)")
    render: RenderConfig = section(RenderConfig, "Cycles render settings")
    quality: QualityConfig = section(QualityConfig, "scene acceptance")
    output: OutputConfig = section(OutputConfig, "output format (reference 3D JPEG quality: 90)")

    def __post_init__(self):
        if self.num_scenes < 0:
            raise ValueError(f"num_scenes must be >= 0, got {self.num_scenes}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
