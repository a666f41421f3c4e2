"""The dataset driver shared by every Blender source: jobs, splits, resumable output, worker processes.

Layout of an output folder::

    OUT/dataset.json                 settings of the run (a later run with other settings is refused)
    OUT/scenes.json                  per-scene attributes, skipped scenes with their reason
    OUT/LICENSE_DATA.md              where the content comes from and its licence (+ copies of licence files)
    OUT/{train,test}/transforms.json all frames of the split (paths into scenes/)
    OUT/{train,test}/scenes/<scene>/{images,masks}/NNNNN.png, transforms.json, scene.json

A scene is rendered into a temporary folder and renamed into place when complete, so an interrupted run
re-renders at most the scenes in flight; running the same command again skips the finished scenes and
rewrites the split ``transforms.json`` files at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, is_dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from rdiff.data.blender.config import CameraRanges, RenderSettings
from rdiff.data.splits import scene_name, scene_rng, split_counts
from rdiff.data.transforms_json import TRANSFORMS_FILE, write_transforms

SCENE_FILE = "scene.json"
SETTINGS_FILE = "dataset.json"
LICENCE_FILE = "LICENSE_DATA.md"
#: The paper's ShapeNet setting: 3,200 scenes, 2,700 train / 500 test.
PAPER_SCENES = 3200
PAPER_TEST_FRACTION = 500 / 3200


@dataclass(frozen=True)
class SceneJob:
    """One scene to render: its split, index within the split, id and source-specific JSON-able parameters."""

    split: str
    index: int
    name: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltScene:
    """What a source built in bpy: the render handles, the object(s) (hidden for the shadow reference) and
    the scene's attributes (written to ``scene.json`` / ``scenes.json``)."""

    handles: object
    objects: list
    attributes: dict


class SceneSource(Protocol):
    """A kind of content. Implementations are frozen dataclasses (they travel to worker processes)."""

    name: str

    def jobs(self, seed: int, scenes: int | None, test_fraction: float) -> list[SceneJob]:
        """All scenes of the dataset (runs in the main process, without bpy)."""

    def prepare(self) -> None:
        """Once per render process, before the first :meth:`build` (heavy imports)."""

    def build(self, job: SceneJob, rng, settings: RenderSettings, work_dir: Path) -> BuiltScene:
        """Build the scene of ``job`` in bpy, drawing its randomness from ``rng``."""

    def licence(self) -> str:
        """Markdown for ``LICENSE_DATA.md``."""

    def licence_files(self) -> list[Path]:
        """Licence files copied next to ``LICENSE_DATA.md``."""


@dataclass(frozen=True)
class GenerateOptions:
    """Options shared by every source.

    Attributes:
        scenes: number of scenes (train + test); ``None`` lets the source decide (a mesh folder: one per mesh).
        views: views per train scene; test scenes get ``max(views, test_views)``.
        seed: seeds content, splits and cameras.
        test_fraction: fraction of scenes (and, for fixed object collections, of objects) held out.
        workers: render processes, each with its own bpy.
        shadows: label cast shadows in the masks (one extra object-free render per view).
    """

    scenes: int | None = PAPER_SCENES
    views: int = 8
    test_views: int = 8
    seed: int = 0
    test_fraction: float = PAPER_TEST_FRACTION
    workers: int = 1
    progress: bool = True
    shadows: bool = True
    render: RenderSettings = field(default_factory=RenderSettings)
    cameras: CameraRanges = field(default_factory=CameraRanges)

    def views_for(self, split: str) -> int:
        return max(self.views, self.test_views) if split == "test" else self.views


def generated_jobs(seed: int, scenes: int, test_fraction: float, params) -> list[SceneJob]:
    """Jobs of a generated source: ``params(split, index)`` gives each scene's parameters."""
    n_train, n_test = split_counts(int(scenes), test_fraction)
    return [SceneJob(split, i, scene_name(split, i), params(split, i))
            for split, count in (("train", n_train), ("test", n_test)) for i in range(count)]


def hash_order(names: Sequence[str], seed: int) -> list[str]:
    """``names`` in a seeded pseudo-random order (a prefix of it is a random subset)."""
    return sorted(names, key=lambda n: hashlib.sha256(f"order:{int(seed)}:{n}".encode()).hexdigest())


def object_jobs(objects_by_split: dict[str, list[str]], counts: dict[str, int], key: str = "object") -> list[SceneJob]:
    """Jobs that cycle through each split's objects: scene ``i`` of a split shows object ``i % n``."""
    jobs = []
    for split in ("train", "test"):
        objs = objects_by_split.get(split, [])
        n = counts.get(split, 0)
        if n and not objs:
            raise ValueError(f"no object falls in the {split} split; use another --seed or --test-fraction")
        jobs += [SceneJob(split, i, scene_name(split, i), {key: objs[i % len(objs)]}) for i in range(n)]
    return jobs


def _jsonable(value):
    if is_dataclass(value):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _settings_record(source: SceneSource, opts: GenerateOptions) -> dict:
    record = {"source": source.name, "source_config": _jsonable(source), **_jsonable(opts)}
    for transient in ("workers", "progress", "scenes"):
        record.pop(transient, None)
    return record


def _scene_dir(out: Path, job: SceneJob) -> Path:
    return out / job.split / "scenes" / job.name


def scene_done(out: Path, job: SceneJob) -> bool:
    d = _scene_dir(out, job)
    return (d / TRANSFORMS_FILE).is_file() and (d / SCENE_FILE).is_file()


def render_scene(source: SceneSource, job: SceneJob, opts: GenerateOptions, out: Path) -> dict:
    """Render one scene into place (bpy must be importable). Returns its attributes, or ``{"skipped": reason}``."""
    from rdiff.data.blender.cameras import sample_views
    from rdiff.data.blender.objects import MeshImportError
    from rdiff.data.blender.render import render_views

    final = _scene_dir(out, job)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{job.name}-", dir=final.parent))
    try:
        rng = scene_rng(opts.seed, job.split, job.index)
        try:
            built = source.build(job, rng, opts.render, tmp / "exr")
        except MeshImportError as e:
            return {"scene": job.name, "split": job.split, **job.params, "skipped": str(e)}
        views = sample_views(rng, opts.views_for(job.split), opts.cameras)
        frames = render_views(built.handles, views, built.objects, opts.render, job.name, seed=job.index * 1000,
                              shadows=opts.shadows)
        shutil.rmtree(tmp / "exr", ignore_errors=True)
        attributes = {"scene": job.name, "split": job.split, **_jsonable(job.params), **_jsonable(built.attributes)}
        (tmp / SCENE_FILE).write_text(json.dumps(attributes, indent=1) + "\n")
        write_transforms(tmp, frames)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return attributes
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# Worker processes: each keeps its source and options between jobs (set by the pool initializer).
_WORKER: dict = {}


def _worker_init(source: SceneSource, opts: GenerateOptions, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    source.prepare()
    _WORKER.update(source=source, opts=opts, out=out)


def _worker_render(job: SceneJob) -> dict:
    return render_scene(_WORKER["source"], job, _WORKER["opts"], _WORKER["out"])


def _check_settings(out: Path, record: dict) -> None:
    path = out / SETTINGS_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        if old != record:
            changed = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise ValueError(f"{out} holds a dataset rendered with other settings ({', '.join(changed)}); "
                             "use another --out folder or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")


def _rel(path: str) -> str:
    return path.removeprefix("./")


def merge_split(out: Path, split: str, jobs: list[SceneJob]) -> Path | None:
    """Write ``OUT/split/transforms.json`` (and the NeRF-synthetic ``OUT/transforms_<split>.json``) with the
    frames of the split's finished scenes, in job order."""
    frames, fov = [], None
    for job in jobs:
        if job.split != split or not scene_done(out, job):
            continue
        meta = json.loads((_scene_dir(out, job) / TRANSFORMS_FILE).read_text())
        prefix = f"./scenes/{job.name}/"
        for fr in meta["frames"]:
            fr = dict(fr, file_path=prefix + _rel(fr["file_path"]))
            if "mask_path" in fr:
                fr["mask_path"] = prefix + _rel(fr["mask_path"])
            frames.append(fr)
        fov = meta["camera_angle_x"] if fov is None else fov
    if not frames:
        return None
    path = out / split / TRANSFORMS_FILE
    path.write_text(json.dumps({"camera_angle_x": fov, "frames": frames}, indent=1) + "\n")
    rooted = [dict(fr, file_path=f"./{split}/" + _rel(fr["file_path"]),
                   **({"mask_path": f"./{split}/" + _rel(fr["mask_path"])} if "mask_path" in fr else {}))
              for fr in frames]
    (out / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": rooted}, indent=1)
                                                  + "\n")
    return path


def generate(source: SceneSource, out: str | Path, opts: GenerateOptions, command: str | None = None) -> dict:
    """Render (or finish rendering) a dataset; returns the content of ``scenes.json``."""
    from tqdm.auto import tqdm

    if opts.views < 1 or opts.workers < 1:
        raise ValueError("views and workers must be >= 1")
    if opts.seed < 0:
        raise ValueError("seed must be >= 0")
    out = Path(out)
    jobs = source.jobs(opts.seed, opts.scenes, opts.test_fraction)
    if not jobs:
        raise ValueError(f"{source.name}: nothing to render")
    _check_settings(out, _settings_record(source, opts))
    todo = [j for j in jobs if not scene_done(out, j)]
    results: dict[str, dict] = {}
    for job in jobs:
        if job not in todo:
            results[job.name] = json.loads((_scene_dir(out, job) / SCENE_FILE).read_text())
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=source.name, unit="scene",
               disable=not opts.progress)
    try:
        if todo and opts.workers == 1:
            source.prepare()
            for job in todo:
                results[job.name] = render_scene(source, job, opts, out)
                bar.update(1)
        elif todo:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(opts.workers, len(todo)), mp_context=ctx,
                                     initializer=_worker_init, initargs=(source, opts, out)) as pool:
                futures = {pool.submit(_worker_render, job): job for job in todo}
                for fut in as_completed(futures):
                    results[futures[fut].name] = fut.result()
                    bar.update(1)
    finally:
        bar.close()
    for split in ("train", "test"):
        merge_split(out, split, jobs)
    scenes = [results[j.name] for j in jobs if j.name in results and "skipped" not in results[j.name]]
    skipped = [results[j.name] for j in jobs if j.name in results and "skipped" in results[j.name]]
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["skipped"]] = reasons.get(s["skipped"], 0) + 1
    summary = {"dataset": source.name, "command": command, "settings": _settings_record(source, opts),
               "rendered": len(scenes), "skipped_count": len(skipped), "skipped_reasons": reasons,
               "scenes": scenes, "skipped": skipped}
    (out / "scenes.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / LICENCE_FILE).write_text(source.licence())
    for f in source.licence_files():
        shutil.copyfile(f, out / Path(f).name)
    if not scenes:
        raise ValueError(f"{source.name}: no scene could be rendered ({'; '.join(reasons) or 'no reason'})")
    return summary
