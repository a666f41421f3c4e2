"""CLEVR1: deterministic single-object CLEVR-like scenes, rendered by a small numpy ray tracer.

Each scene is one CLEVR object (cube, sphere or cylinder with a vertical axis; one of CLEVR's 8 colours;
rubber or metal; large or small; random yaw) standing at the origin on a finite grey ground disc
(x, y in [-1, 1], z = ``GROUND_Z`` = -0.5), so everything lies inside the cube [-1, 1]^3. Lighting is fixed in
world space (so all views of a scene are consistent): three area lights (key, fill, back) with soft shadows
(jittered shadow rays) plus an ambient term. Rays that miss everything see the constant ``BACKGROUND``.
Images are supersampled (default 4x4 per pixel) in linear space, clamped and gamma-encoded.

Cameras sit on a sphere around the origin looking at it: radius U[2.7, 3.3], elevation U[15, 60] degrees,
azimuth U[0, 360), horizontal fov U[40, 50] degrees.

Usage: ``python -m rdiff.data.clevr1 --out DIR --scenes N --views V --size 32 --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rdiff.cameras import Cameras, orbit_cameras
from rdiff.data.splits import scene_name, scene_rng, scene_seed, split_counts
from rdiff.data.transforms_json import MASK_OBJECT, MASK_SHADOW, PosedImage, write_transforms

# ---------------------------------------------------------------------------------------------------
# Scene constants

#: Colour (display RGB in [0, 1]) of rays that miss the ground and the object.
BACKGROUND = (0.80, 0.80, 0.82)
#: Height of the ground plane; objects rest on it.
GROUND_Z = -0.5
#: The ground is the disc x^2 + y^2 <= GROUND_RADIUS^2 at z = GROUND_Z (a disc, not a square, so the
#: scene fits the unit cube in any frame rotated about +Z, e.g. the model's view-aligned triplane).
GROUND_RADIUS = 1.0
#: Ground albedo (display value, before shading).
GROUND_GREY = 0.5
GAMMA = 2.2

#: CLEVR's colour palette (RGB 0-255, from CLEVR's properties.json).
COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SHAPES = ("cube", "sphere", "cylinder")
MATERIALS = ("rubber", "metal")
#: Half-extent of an object (sphere/cylinder radius, half the cube side, half the cylinder height).
SIZES = {"large": 0.5, "small": 0.28}

# Camera distribution.
RADIUS_RANGE = (2.7, 3.3)
ELEVATION_RANGE_DEG = (15.0, 60.0)
FOV_RANGE_DEG = (40.0, 50.0)


@dataclass(frozen=True)
class AreaLight:
    """A disc light facing the origin, placed by azimuth/elevation (degrees) and distance."""

    azimuth_deg: float
    elevation_deg: float
    distance: float
    radius: float
    intensity: float

    @property
    def direction(self) -> np.ndarray:
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)], np.float32)

    @property
    def centre(self) -> np.ndarray:
        return self.direction * np.float32(self.distance)


#: Fixed world-space three-point lighting (key, fill, back).
KEY_LIGHT = AreaLight(azimuth_deg=-40.0, elevation_deg=50.0, distance=6.0, radius=1.0, intensity=1.0)
FILL_LIGHT = AreaLight(azimuth_deg=115.0, elevation_deg=35.0, distance=6.0, radius=2.0, intensity=0.25)
BACK_LIGHT = AreaLight(azimuth_deg=200.0, elevation_deg=60.0, distance=6.0, radius=2.0, intensity=0.25)
LIGHTS = (KEY_LIGHT, FILL_LIGHT, BACK_LIGHT)
#: Uniform ambient irradiance (unshadowed sky light).
AMBIENT = 0.32

_EPS = 1e-4
_F = np.float32


def _lin(c) -> np.ndarray:
    return np.power(np.asarray(c, dtype=np.float32), _F(GAMMA))


@dataclass(frozen=True)
class Clevr1Scene:
    """One CLEVR1 scene.

    Attributes:
        shape: "cube", "sphere" or "cylinder".
        colour: CLEVR colour name (a key of ``COLOURS``).
        rgb: the colour as display RGB in [0, 1].
        material: "rubber" or "metal".
        size: "large" or "small" (half-extent ``SIZES[size]``).
        yaw: rotation about +Z in radians (only visible for cubes).
    """

    shape: str
    colour: str
    rgb: tuple[float, float, float]
    material: str
    size: str
    yaw: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if self.material not in MATERIALS:
            raise ValueError(f"material must be one of {MATERIALS}, got {self.material!r}")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {tuple(SIZES)}, got {self.size!r}")

    @staticmethod
    def make(shape: str, colour: str, material: str = "rubber", size: str = "large", yaw: float = 0.0):
        """Build a scene from names (rgb looked up in ``COLOURS``)."""
        rgb = tuple(float(v) / 255.0 for v in COLOURS[colour])
        return Clevr1Scene(shape, colour, rgb, material, size, float(yaw))

    @property
    def half_extent(self) -> float:
        return SIZES[self.size]

    @property
    def centre(self) -> np.ndarray:
        return np.array([0.0, 0.0, GROUND_Z + self.half_extent], np.float32)

    @property
    def bounding_radius(self) -> float:
        h = self.half_extent
        return {"sphere": h, "cube": h * math.sqrt(3.0), "cylinder": h * math.sqrt(2.0)}[self.shape]

    def to_dict(self) -> dict:
        return asdict(self)


def sample_scene(rng: np.random.Generator) -> Clevr1Scene:
    """Draw a random scene (shape, colour, material, size and yaw uniformly)."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    material = MATERIALS[int(rng.integers(len(MATERIALS)))]
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    yaw = float(rng.uniform(0.0, 2.0 * math.pi))
    return Clevr1Scene.make(shape, colour, material, size, yaw)


def sample_camera(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Draw a camera: ``(c2w (4, 4) float32, fov_x radians)`` looking at the origin."""
    radius = float(rng.uniform(*RADIUS_RANGE))
    elevation = float(rng.uniform(*ELEVATION_RANGE_DEG))
    azimuth = float(rng.uniform(0.0, 360.0))
    fov_x = math.radians(float(rng.uniform(*FOV_RANGE_DEG)))
    cams = orbit_cameras(azimuth, elevation, radius, fov_x)
    return cams.c2w[0].numpy().astype(np.float32), fov_x


# ---------------------------------------------------------------------------------------------------
# Ray-object intersection (entry hits of convex shapes; arrays are (N, 3) float32)


def _rot_z(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = _F(math.cos(angle)), _F(math.sin(angle))
    out = v.copy()
    out[:, 0] = c * v[:, 0] - s * v[:, 1]
    out[:, 1] = s * v[:, 0] + c * v[:, 1]
    return out


def _hit_object(scene: Clevr1Scene, o: np.ndarray, d: np.ndarray, want_normal: bool = True):
    """Entry distance ``t (N,)`` (inf on a miss) and outward normal ``(N, 3)`` (or None)."""
    h = _F(scene.half_extent)
    p = o - scene.centre
    inf = _F(np.inf)
    if scene.shape == "sphere":
        b = np.einsum("ij,ij->i", p, d)
        c = np.einsum("ij,ij->i", p, p) - h * h
        disc = b * b - c
        ok = disc >= 0
        t = -b - np.sqrt(np.maximum(disc, 0))
        t = np.where(ok & (t > _EPS), t, inf)
        if not want_normal:
            return t, None
        n = (p + np.where(np.isfinite(t), t, 0)[:, None] * d) / h
        return t, n
    if scene.shape == "cube":
        if scene.yaw:
            p, d = _rot_z(p, -scene.yaw), _rot_z(d, -scene.yaw)
        dd = np.where(np.abs(d) < 1e-12, _F(1e-12), d)
        inv = 1.0 / dd
        t1 = (-h - p) * inv
        t2 = (h - p) * inv
        tn = np.minimum(t1, t2)
        tf = np.maximum(t1, t2)
        tnear = tn.max(axis=1)
        tfar = tf.min(axis=1)
        t = np.where((tnear <= tfar) & (tnear > _EPS), tnear, inf)
        if not want_normal:
            return t, None
        axis = tn.argmax(axis=1)
        n = np.zeros_like(p)
        rows = np.arange(p.shape[0])
        n[rows, axis] = -np.sign(d[rows, axis])
        if scene.yaw:
            n = _rot_z(n, scene.yaw)
        return t, n
    # Cylinder with a vertical axis: radius h, z in [-h, h] (local).
    px, py, pz = p[:, 0], p[:, 1], p[:, 2]
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    a = dx * dx + dy * dy
    b = px * dx + py * dy
    c = px * px + py * py - h * h
    disc = b * b - a * c
    a_safe = np.where(a < 1e-12, _F(1e-12), a)
    t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a_safe
    z_side = pz + t_side * dz
    side_ok = (disc >= 0) & (a >= 1e-12) & (t_side > _EPS) & (np.abs(z_side) <= h)
    t_side = np.where(side_ok, t_side, inf)
    dz_safe = np.where(np.abs(dz) < 1e-12, _F(1e-12), dz)
    # The entry cap is the top one for rays going down and the bottom one for rays going up.
    cap_z = np.where(dz < 0, h, -h)
    t_cap = (cap_z - pz) / dz_safe
    cx, cy = px + t_cap * dx, py + t_cap * dy
    cap_ok = (np.abs(dz) >= 1e-12) & (t_cap > _EPS) & (cx * cx + cy * cy <= h * h)
    t_cap = np.where(cap_ok, t_cap, inf)
    t = np.minimum(t_side, t_cap)
    if not want_normal:
        return t, None
    tt = np.where(np.isfinite(t), t, 0)
    use_side = t_side <= t_cap
    n = np.zeros_like(p)
    n[:, 0] = np.where(use_side, (px + tt * dx) / h, 0)
    n[:, 1] = np.where(use_side, (py + tt * dy) / h, 0)
    n[:, 2] = np.where(use_side, 0, np.sign(cap_z))
    return t, n


def _hit_ground(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Distance to the finite ground disc (inf on a miss); only hit from above."""
    dz = d[:, 2]
    down = dz < -1e-8
    t = (GROUND_Z - o[:, 2]) / np.where(down, dz, _F(-1.0))
    x = o[:, 0] + t * d[:, 0]
    y = o[:, 1] + t * d[:, 1]
    ok = down & (t > _EPS) & (x * x + y * y <= GROUND_RADIUS * GROUND_RADIUS)
    return np.where(ok, t, _F(np.inf)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Shading (linear radiance)


def _light_basis(light: AreaLight) -> tuple[np.ndarray, np.ndarray]:
    w = light.direction
    helper = np.array([0.0, 0.0, 1.0], np.float32) if abs(w[2]) < 0.9 else np.array([1.0, 0.0, 0.0], np.float32)
    u = np.cross(w, helper)
    u /= np.linalg.norm(u)
    v = np.cross(w, u)
    return u.astype(np.float32), v.astype(np.float32)


def _ground_irradiance(
    scene: Clevr1Scene, P: np.ndarray, rng: np.random.Generator, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Irradiance ``(M,)`` at ground points with soft object shadows, and the same without the object."""
    m = P.shape[0]
    irr = np.full(m, AMBIENT, np.float32)
    free = irr.copy()
    if m == 0:
        return irr, free
    C = scene.centre
    rb = _F(scene.bounding_radius)
    for light in LIGHTS:
        Lc = light.centre
        w = Lc - P
        dist = np.linalg.norm(w, axis=1)
        wd = w / dist[:, None]
        unshadowed = np.maximum(wd[:, 2], 0)  # n = +Z
        # Only points whose light cone passes near the object's bounding sphere need shadow rays.
        cp = C - P
        s = np.einsum("ij,ij->i", cp, wd)
        perp = np.linalg.norm(cp - s[:, None] * wd, axis=1)
        cand = np.nonzero((s > 0) & (perp <= rb + _F(light.radius) * s / dist + _F(1e-3)))[0]
        contrib = unshadowed
        if cand.size:
            u, v = _light_basis(light)
            k = samples
            xi = rng.random((cand.size, k, 2), dtype=np.float32)
            theta = (np.arange(k, dtype=np.float32)[None, :] + xi[..., 0]) * _F(2 * math.pi / k)
            r = _F(light.radius) * np.sqrt(xi[..., 1])
            S = Lc + (r * np.cos(theta))[..., None] * u + (r * np.sin(theta))[..., None] * v  # (c, k, 3)
            Pc = np.broadcast_to(P[cand][:, None, :], S.shape)
            ld = S - Pc
            ldist = np.linalg.norm(ld, axis=-1)
            ld = ld / ldist[..., None]
            t, _ = _hit_object(scene, Pc.reshape(-1, 3), ld.reshape(-1, 3), want_normal=False)
            vis = (t.reshape(ldist.shape) >= ldist).astype(np.float32)
            contrib = contrib.copy()
            contrib[cand] = np.mean(vis * np.maximum(ld[..., 2], 0), axis=1)
        irr += _F(light.intensity) * contrib
        free += _F(light.intensity) * unshadowed
    return irr, free


def _environment(d: np.ndarray) -> np.ndarray:
    """Radiance seen by reflected rays that miss the ground: a studio backdrop, bright above, dark below."""
    bg = _lin(BACKGROUND)
    up = np.sqrt(np.clip(d[:, 2:3], 0, 1))
    down = np.clip(-d[:, 2:3], 0, 1)
    return bg[None, :] * (0.35 + 0.9 * up - 0.25 * down)


def _shade_object(
    scene: Clevr1Scene, P: np.ndarray, n: np.ndarray, d: np.ndarray, rng: np.random.Generator, samples: int
) -> np.ndarray:
    albedo = _lin(scene.rgb)
    V = -d
    diffuse = np.full(P.shape[0], AMBIENT, np.float32)
    metal = scene.material == "metal"
    spec_exp, spec_w = (_F(250.0), _F(1.2)) if metal else (_F(12.0), _F(0.07))
    spec = np.zeros(P.shape[0], np.float32)
    for light in LIGHTS:
        ld = light.centre - P
        ld /= np.linalg.norm(ld, axis=1, keepdims=True)
        ndl = np.einsum("ij,ij->i", n, ld)
        diffuse += _F(light.intensity) * np.maximum(ndl, 0)
        hv = ld + V
        hv /= np.maximum(np.linalg.norm(hv, axis=1, keepdims=True), _F(1e-8))
        ndh = np.maximum(np.einsum("ij,ij->i", n, hv), 0)
        spec += _F(light.intensity) * np.where(ndl > 0, ndh**spec_exp, 0)
    if not metal:
        return albedo[None] * diffuse[:, None] + (spec_w * spec)[:, None]
    # Metal: mirror reflection of ground / environment tinted by the colour + sharp highlights.
    R = d - 2 * np.einsum("ij,ij->i", d, n)[:, None] * n
    Po = P + _F(_EPS * 10) * n
    tg = _hit_ground(Po, R)
    refl = _environment(R)
    g = np.isfinite(tg)
    if g.any():
        Pg = Po[g] + tg[g][:, None] * R[g]
        refl[g] = _F(_lin(GROUND_GREY)) * _ground_irradiance(scene, Pg, rng, max(2, samples // 4))[0][:, None]
    # Schlick Fresnel with the colour as reflectance at normal incidence.
    cos_v = np.clip(np.einsum("ij,ij->i", n, V), 0, 1)[:, None]
    fresnel = albedo[None] + (1.0 - albedo[None]) * (1.0 - cos_v) ** 5
    return 0.06 * albedo[None] * diffuse[:, None] + fresnel * refl + (spec_w * spec)[:, None] * fresnel


#: A ground point counts as shadowed (mask label MASK_SHADOW) where the object removes at least this
#: fraction of its irradiance.
SHADOW_THRESHOLD = 0.04


def _trace(
    scene: Clevr1Scene, o: np.ndarray, d: np.ndarray, rng: np.random.Generator, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linear radiance ``(N, 3)`` of primary rays and their labels ``(N,)``: 2 object, 1 shadow, 0 other."""
    t_obj, n_obj = _hit_object(scene, o, d)
    t_gnd = _hit_ground(o, d)
    out = np.broadcast_to(_lin(BACKGROUND), o.shape).copy()
    labels = np.zeros(o.shape[0], np.uint8)
    obj = np.isfinite(t_obj) & (t_obj <= t_gnd)
    gnd = np.isfinite(t_gnd) & ~obj
    if gnd.any():
        Pg = o[gnd] + t_gnd[gnd][:, None] * d[gnd]
        irr, free = _ground_irradiance(scene, Pg, rng, samples)
        out[gnd] = _F(_lin(GROUND_GREY)) * irr[:, None]
        labels[gnd] = (irr < free * _F(1.0 - SHADOW_THRESHOLD)).astype(np.uint8)
    if obj.any():
        Po = o[obj] + t_obj[obj][:, None] * d[obj]
        out[obj] = _shade_object(scene, Po, n_obj[obj], d[obj], rng, samples)
        labels[obj] = 2
    return out, labels


def render_view(
    scene: Clevr1Scene,
    c2w,
    fov_x: float,
    size: int,
    rng_or_seed: np.random.Generator | int = 0,
    supersample: int = 4,
    shadow_samples: int = 8,
    with_mask: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render one view: ``(size, size, 3)`` float32 display RGB in [0, 1] (and its label mask).

    Args:
        scene: the scene.
        c2w: ``(4, 4)`` camera-to-world (numpy or torch; OpenGL axes).
        fov_x: horizontal fov in radians.
        size: output width = height in pixels.
        rng_or_seed: randomness for the soft-shadow light samples (a Generator or an int seed).
        supersample: rays per pixel along each axis (box-filtered down).
        shadow_samples: jittered shadow rays per light per ray.
        with_mask: also return the ``(size, size)`` uint8 label mask (``MASK_OBJECT`` where at least half
            of a pixel's rays hit the object, else ``MASK_SHADOW`` where at least half hit object or shadow).
    """
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    ss = max(1, int(supersample))
    res = int(size) * ss
    c2w_t = torch.as_tensor(np.asarray(c2w, dtype=np.float32))
    cams = Cameras(c2w_t, torch.tensor([float(fov_x)], dtype=torch.float32))
    o, d = cams.pixel_rays(res, res)
    o = o[0].reshape(-1, 3).numpy().astype(np.float32)
    d = d[0].reshape(-1, 3).numpy().astype(np.float32)
    lin, labels = _trace(scene, o, d, rng, int(shadow_samples))
    lin = np.clip(lin, 0, 1).reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
    image = np.clip(np.power(lin, _F(1.0 / GAMMA)), 0, 1).astype(np.float32)
    if not with_mask:
        return image
    labels = labels.reshape(size, ss, size, ss)
    obj = (labels == 2).mean(axis=(1, 3)) >= 0.5
    fg = (labels >= 1).mean(axis=(1, 3)) >= 0.5
    mask = np.where(obj, MASK_OBJECT, np.where(fg, MASK_SHADOW, 0)).astype(np.uint8)
    return image, mask


# ---------------------------------------------------------------------------------------------------
# Dataset generation


def generate_clevr1(
    out_dir,
    scenes: int,
    views: int,
    size: int = 32,
    seed: int = 0,
    test_fraction: float = 0.1,
    progress: bool = True,
    supersample: int = 4,
    shadow_samples: int = 8,
) -> dict:
    """Render a CLEVR1 dataset to ``out_dir/{train,test}/transforms.json`` (+ ``out_dir/scenes.json``).

    Train scene ``i`` and test scene ``j`` come from separate random streams (:mod:`rdiff.data.splits`), so a
    smaller dataset's test scenes are never train scenes of a larger one; the same arguments give
    byte-identical files. Every view gets an object / shadow mask. The test folder is skipped when the test
    split is empty.
    Returns a summary dict (the content of ``scenes.json``).
    """
    from tqdm import tqdm

    if scenes < 1 or views < 1:
        raise ValueError("need at least one scene and one view")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    out_dir = Path(out_dir)
    n_train, n_test = split_counts(scenes, test_fraction)
    bar = tqdm(total=scenes * views, disable=not progress, desc="clevr1", unit="view")
    meta: list[dict] = []

    def split_views(count: int, split: str) -> Iterator[PosedImage]:
        for i in range(count):
            srng = scene_rng(seed, split, i)
            scene = sample_scene(srng)
            name = scene_name(split, i)
            meta.append({"scene": name, "split": split, **scene.to_dict()})
            for v in range(views):
                c2w, fov = sample_camera(srng)
                img, mask = render_view(scene, c2w, fov, size, np.random.default_rng([*scene_seed(seed, split, i), v]),
                                        supersample, shadow_samples, with_mask=True)
                bar.update(1)
                yield PosedImage(image=img, c2w=c2w, fov_x=fov, scene=name, file_path="", mask=mask)

    # The per-view torch work (pixel rays) is tiny: extra intra-op threads only add contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        write_transforms(out_dir / "train", split_views(n_train, "train"))
        if n_test:
            write_transforms(out_dir / "test", split_views(n_test, "test"))
    finally:
        torch.set_num_threads(threads)
        bar.close()
    summary = {
        "dataset": "clevr1",
        "seed": seed,
        "size": size,
        "views": views,
        "background": list(BACKGROUND),
        # the output folder is left out so that the same arguments give byte-identical files anywhere
        "command": f"python -m rdiff data clevr1 --scenes {scenes} --views {views} --size {size}"
        f" --seed {seed} --test-fraction {test_fraction} --supersample {supersample} --shadow-samples {shadow_samples}",
        "scenes": meta,
    }
    (out_dir / "scenes.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", required=True, help="output folder (gets train/ and test/)")
    parser.add_argument("--scenes", type=int, default=1000, help="number of scenes")
    parser.add_argument("--views", type=int, default=8, help="views per scene")
    parser.add_argument("--size", type=int, default=32, help="image width = height")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.1, help="fraction of scenes held out")
    parser.add_argument("--supersample", type=int, default=4, help="rays per pixel along each axis")
    parser.add_argument("--shadow-samples", type=int, default=8, help="shadow rays per light")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run(args: argparse.Namespace) -> dict:
    summary = generate_clevr1(
        args.out,
        scenes=args.scenes,
        views=args.views,
        size=args.size,
        seed=args.seed,
        test_fraction=args.test_fraction,
        progress=not args.no_progress,
        supersample=args.supersample,
        shadow_samples=args.shadow_samples,
    )
    n_test = sum(s["split"] == "test" for s in summary["scenes"])
    print(f"wrote {len(summary['scenes']) - n_test} train and {n_test} test scenes x {args.views} views to {args.out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="rdiff.data.clevr1", description=__doc__.splitlines()[0]))
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
