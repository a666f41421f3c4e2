"""Settings of a Blender-rendered dataset, as plain dataclasses (picklable, JSON-able with ``asdict``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RenderSettings:
    """Cycles on the CPU.

    Attributes:
        size: image width = height in pixels.
        samples: path-tracing samples per pixel.
        denoise: run OpenImageDenoise on the result (16 samples + denoising is clean at 64x64; without it
            the floor is grainy).
        threads: CPU threads of one render process.
        max_bounces: total light bounces (diffuse and glossy get at most 4 of them).
        shadow_threshold: a floor pixel is labelled shadow when the object lowers its linear luminance by at least
            this fraction (as :data:`rdiff.data.clevr1.SHADOW_THRESHOLD`).
    """

    size: int = 64
    samples: int = 16
    denoise: bool = True
    threads: int = 1
    max_bounces: int = 6
    shadow_threshold: float = 0.04

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        if self.samples < 1 or self.threads < 1:
            raise ValueError("samples and threads must be >= 1")


@dataclass(frozen=True)
class CameraRanges:
    """Cameras on the upper hemisphere looking at the origin, drawn uniformly in these ranges.

    The defaults keep an object of bounding radius 0.85 (see :class:`Placement`) inside every frame:
    ``radius_min * sin(fov_min / 2) = 2.7 * sin(20 deg) = 0.92``.
    """

    elevation_deg: tuple[float, float] = (10.0, 60.0)
    radius: tuple[float, float] = (2.7, 3.3)
    fov_deg: tuple[float, float] = (40.0, 50.0)

    def __post_init__(self) -> None:
        for name in ("elevation_deg", "radius", "fov_deg"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: lower bound {lo} is above upper bound {hi}")
        if not (-90.0 <= self.elevation_deg[0] and self.elevation_deg[1] <= 90.0):
            raise ValueError("elevation must lie in [-90, 90] degrees")
        if self.radius[0] <= 0 or not (0 < self.fov_deg[0] and self.fov_deg[1] < 180):
            raise ValueError("radius must be > 0 and fov in (0, 180) degrees")


@dataclass(frozen=True)
class Placement:
    """How an object is normalised into the scene box [-1, 1]^3.

    The object is scaled so that the half-diagonal of its axis-aligned bounding box is ``radius`` (so it lies
    inside the ball of that radius about the origin, and inside the box in any frame rotated about +Z), its box
    is centred on the origin, and the floor is put at the bottom of the box: the object stands on the floor and
    its centre projects to the image centre.
    """

    radius: float = 0.85


@dataclass(frozen=True)
class AreaLight:
    """A square area light aimed at the origin, placed by azimuth / elevation (degrees) and distance."""

    azimuth_deg: float
    elevation_deg: float
    distance: float
    size: float
    power: float  # watts


@dataclass(frozen=True)
class Style:
    """Floor, world and lights. Colours are linear RGB in [0, 1] (Blender's scene-linear)."""

    floor_rgb: tuple[float, float, float] = (0.16, 0.018, 0.018)  # dark red (display ~ #6f2525)
    floor_roughness: float = 0.6
    world_rgb: tuple[float, float, float] = (0.55, 0.55, 0.58)
    world_strength: float = 0.35
    lights: tuple[AreaLight, ...] = field(default_factory=lambda: (
        AreaLight(azimuth_deg=-40.0, elevation_deg=55.0, distance=6.0, size=1.5, power=450.0),  # key
        AreaLight(azimuth_deg=120.0, elevation_deg=35.0, distance=6.0, size=3.0, power=130.0),  # fill
    ))


#: The paper's ShapeNet planes / chairs look: dark-red floor.
DARK_RED = Style()
#: Grey floor (the paper's cars).
GREY = Style(floor_rgb=(0.3, 0.3, 0.3))
