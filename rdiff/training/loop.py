"""The training loop: denoise noisy posed images, loss on the input view only, random ray subsets.

Runs in one process (CPU or GPU) or under ``torchrun`` with DDP (gloo on CPU, nccl on GPU).
Checkpoints in ``out_dir/checkpoint`` make it resumable; the EMA model is exported with
``save_pretrained`` to ``out_dir/model`` at every checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from rdiff.cameras import Cameras
from rdiff.config import ENCODER_EXTENSIONS, RenderDiffusionConfig, TrainConfig
from rdiff.data.transforms_json import MASK_OBJECT
from rdiff.encoder import TriplaneEncoder
from rdiff.model import RenderDiffusion
from rdiff.training.checkpoint import load_training_state, save_training_state
from rdiff.training.ema import EMA

if TYPE_CHECKING:
    from rdiff.data import PosedImageDataset

FOCUS_DILATION = 2  # pixels around the object that count as its own for ray sampling (its silhouette edge)


def random_rays(
    cameras: Cameras, size: int, count: int, generator: torch.Generator | None = None,
    focus: Tensor | None = None, focus_fraction: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` distinct random pixel rays per camera: origins, dirs ``(B, R, 3)`` and flat pixel indices ``(B, R)``.

    With a boolean ``focus (B, H*W)`` and ``focus_fraction > 0``, that fraction of each camera's rays is drawn
    from its focus pixels (all of them when there are fewer) and the rest uniformly from the pixels not taken.
    """
    origins, dirs = cameras.pixel_rays(size, size)
    b = len(cameras)
    count = min(count, size * size)
    keys = torch.rand(b, size * size, generator=generator)
    if focus is not None and focus_fraction > 0:
        focus = focus.reshape(b, -1).cpu()
        n_focus = min(count, int(round(focus_fraction * count)))
        first = torch.where(focus, keys, 1.0 + keys).argsort(dim=1)[:, :n_focus]  # focus pixels first, at random
        n_focus = torch.minimum(focus.sum(1), torch.tensor(n_focus))  # per camera: fewer when the focus is small
        taken = torch.zeros_like(focus)
        rank = torch.arange(first.shape[1])[None].expand(b, -1)
        taken.scatter_(1, first, rank < n_focus[:, None])
        rest = torch.rand(b, size * size, generator=generator)  # fresh keys: the first ones favour the taken
        keys = torch.where(taken, keys - 2.0, rest)  # taken pixels sort first, then the rest uniformly
    idx = keys.argsort(dim=1)[:, :count].to(origins.device)
    pick = idx[..., None].expand(-1, -1, 3)
    return origins.reshape(b, -1, 3).gather(1, pick), dirs.reshape(b, -1, 3).gather(1, pick), idx


def focus_pixels(masks: Tensor, dilation: int = FOCUS_DILATION) -> Tensor:
    """Label masks ``(B, H, W)`` -> boolean ``(B, H*W)``: object pixels, dilated by ``dilation`` px."""
    fg = (masks >= MASK_OBJECT).float()[:, None]
    if dilation > 0:
        fg = torch.nn.functional.max_pool2d(fg, 2 * dilation + 1, stride=1, padding=dilation)
    return fg[:, 0].flatten(1) > 0


def gather_pixels(images: Tensor, idx: Tensor) -> Tensor:
    """Pixels ``(B, R, 3)`` of images ``(B, 3, H, W)`` at flat indices ``idx (B, R)``."""
    b = images.shape[0]
    flat = images.reshape(b, 3, -1).transpose(1, 2)
    return flat.gather(1, idx[..., None].expand(-1, -1, 3))


def random_training_timesteps(batch: int, timesteps: int, low_fraction: float = 0.0, low_max: int = 100,
                              device: torch.device | str = "cpu") -> Tensor:
    """Random training timesteps, one per image: uniform in [0, T), except a ``low_fraction`` of them uniform in
    [0, low_max). (Not the sampling schedule: that is :func:`rdiff.diffusion.inference_timesteps`.)"""
    t = torch.randint(0, timesteps, (batch,), device=device)
    if low_fraction > 0:
        low = torch.rand(batch, device=device) < low_fraction
        t = torch.where(low, torch.randint(0, min(low_max, timesteps), (batch,), device=device), t)
    return t


def diffusion_loss(
    model: RenderDiffusion, images: Tensor, cameras: Cameras, rays_per_image: int, t: Tensor | None = None,
    other: tuple[Tensor, Cameras] | None = None, other_weight: float = 0.0,
    focus: tuple[Tensor, Tensor | None] | None = None, focus_fraction: float = 0.0,
) -> Tensor:
    """x0-prediction MSE on a random subset of the input view's pixels (timesteps uniform unless given).

    With ``other=(images, cameras)`` of other views of the same scenes and ``other_weight > 0``, the
    triplane inferred from the noisy input view is also rendered from the other view and its MSE is added
    with that weight (the unseen-view loss; the paper's monocular objective is ``other_weight = 0``). Both
    views' rays go through one forward pass, so DDP sees every parameter used once.

    With ``focus=(input view's, other view's)`` boolean ``(B, H*W)`` pixel sets (:func:`focus_pixels`) and
    ``focus_fraction > 0``, that fraction of each view's rays is drawn from its focus pixels (see
    :func:`random_rays`): the loss then weighs the object more than its share of the frame.
    """
    core = model.module if isinstance(model, DistributedDataParallel) else model
    b, m = images.shape[0], images.shape[-1]
    if t is None:
        t = torch.randint(0, core.diffusion.timesteps, (b,), device=images.device)
    x_t = core.diffusion.q_sample(images, t, torch.randn_like(images))
    with_other = other is not None and other_weight > 0
    focus_own, focus_other = focus if focus is not None and focus_fraction > 0 else (None, None)
    if rays_per_image >= m * m and not with_other:
        out = model(x_t, t, cameras, perturb=True)
        return torch.mean((out.x0 - images) ** 2)
    origins, dirs, idx = random_rays(cameras, m, rays_per_image, focus=focus_own, focus_fraction=focus_fraction)
    if not with_other:
        out = model(x_t, t, cameras, rays=(origins, dirs), perturb=True)
        return torch.mean((out.x0 - gather_pixels(images, idx)) ** 2)
    other_images, other_cameras = other
    o2, d2, idx2 = random_rays(other_cameras.to(images.device, images.dtype), m, rays_per_image,
                               focus=focus_other, focus_fraction=focus_fraction)
    r = origins.shape[1]
    out = model(x_t, t, cameras, rays=(torch.cat([origins, o2], 1), torch.cat([dirs, d2], 1)), perturb=True)
    own = torch.mean((out.x0[:, :r] - gather_pixels(images, idx)) ** 2)
    unseen = torch.mean((out.x0[:, r:] - gather_pixels(other_images, idx2)) ** 2)
    return own + other_weight * unseen


def _infinite(loader: DataLoader, sampler: DistributedSampler | None) -> Iterator[dict]:
    epoch = 0
    while True:
        if sampler is not None:
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True if ``flag`` is set on any process, so that all DDP ranks stop at the same step."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


@torch.no_grad()
def save_samples(model: RenderDiffusion, images: Tensor, cameras: Cameras, path: Path) -> None:
    """A grid: input | x0 from t=0 | x_t at t=T/4 | its x0 | the t=0 triplane seen from 90 degrees away."""
    from rdiff.cameras import orbit_cameras, position_to_spherical

    model.eval()
    d = model.diffusion
    t0 = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
    rec = model(images, t0, cameras, inference=True)
    tq = torch.full_like(t0, d.timesteps // 4)
    x_t = d.q_sample(images, tq, torch.randn_like(images))
    rec_t = model(x_t, tq, cameras, inference=True)
    az, el, r = position_to_spherical(cameras.position)
    side = orbit_cameras(az.cpu() + 90, el.cpu(), r.cpu(), float(cameras.fov_x[0])).to(images.device)
    side.fov_x = cameras.fov_x
    m = images.shape[-1]
    novel = model.render_world(rec.planes, rec.triplane_rotations, side, m, m, field=model.inference_field(rec.planes))
    novel = novel.rgb * 2 - 1
    cols = [images, rec.x0, x_t.clamp(-1, 1), rec_t.x0, novel]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in cols], dim=2)  # (3, B*M, 5*M)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@dataclass(frozen=True)
class _Run:
    """Where and how this process trains: the config, its DDP rank, world size and device, the run's folder."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that writes logs, samples and checkpoints."""
        return self.rank == 0

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoint"

    @property
    def model_dir(self) -> Path:
        return self.out / "model"


@dataclass
class _State:
    """What a run carries from step to step and keeps in its checkpoints."""

    model: RenderDiffusion
    ema: EMA
    optimizer: torch.optim.Optimizer
    step: int = 0
    images_seen: int = 0
    warmup_start: int = 0  # the step the learning-rate warm-up (re)started at


@dataclass
class _StepResult:
    loss: Tensor
    grad_norm: Tensor
    lr: float


def _start_process(cfg: TrainConfig) -> _Run:
    """Join the process group (under torchrun), set threads and this rank's seed."""
    rank, world, device = _setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    return _Run(cfg, rank, world, device, Path(cfg.out_dir))


def _end_process(run: _Run) -> None:
    """Wait for every rank, then leave the process group."""
    if run.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _make_loader(run: _Run) -> tuple[PosedImageDataset, DataLoader, DistributedSampler | None]:
    """The training set (with other views when the unseen-view loss is on) and this rank's loader."""
    from rdiff.data import PosedImageDataset

    cfg = run.cfg
    dataset = PosedImageDataset(cfg.data, size=cfg.model.image_size, paired=cfg.novel_view_weight > 0)
    if cfg.object_ray_fraction > 0 and not dataset.has_masks:
        raise ValueError(f"object_ray_fraction needs object masks, and {cfg.data} has frames without one "
                         "(mask_path in transforms.json)")
    sampler = None
    if run.world > 1:
        sampler = DistributedSampler(dataset, num_replicas=run.world, rank=run.rank, seed=cfg.seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler if sampler is not None else RandomSampler(dataset),
        num_workers=cfg.num_workers,
        drop_last=len(dataset) >= cfg.batch_size * run.world,
    )
    return dataset, loader, sampler


#: Parameter-name prefixes of the geometry-aware encoder modules: they start as exact no-ops (``rdiff.lifting``), so a
#: fine-tune that switches on ``ENCODER_EXTENSIONS`` over ``init_from``'s model starts as that model.
EXTENSION_MODULES = tuple(f"encoder.{name}." for name in TriplaneEncoder.EXTENSION_MODULES)


def _new_state(run: _Run) -> _State:
    """A freshly initialised model, its EMA and the optimiser, at step 0."""
    cfg = run.cfg
    model = RenderDiffusion(cfg.model).to(run.device)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(parameter_groups(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _State(model, ema, optimizer)


def parameter_groups(model: RenderDiffusion) -> list[dict]:
    """The optimiser's parameter groups: the model, and (flagged ``extension``) the geometry-aware encoder
    modules of :data:`EXTENSION_MODULES`, whose learning rate ``extension_lr_scale`` scales."""
    named = list(model.named_parameters())
    extension = [p for n, p in named if n.startswith(EXTENSION_MODULES)]
    groups = [{"params": [p for n, p in named if not n.startswith(EXTENSION_MODULES)]}]
    if extension:
        groups.append({"params": extension, "extension": True})
    return groups


def _resume_point(run: _Run) -> Path | None:
    """The checkpoint to continue: the run's own, else ``resume_from`` (which must be one), else none."""
    if (run.ckpt_dir / "state.json").exists():
        return run.ckpt_dir
    if not run.cfg.resume_from:
        return None
    resume = Path(run.cfg.resume_from)
    if not (resume / "state.json").exists():
        raise FileNotFoundError(f"resume_from {run.cfg.resume_from!r} is not a training checkpoint (no state.json)")
    return resume


def _saved_model_config(saved: dict) -> RenderDiffusionConfig | None:
    """The model config a training checkpoint's state.json records (options added since then at their defaults),
    or None when it records none or an unreadable one."""
    try:
        return RenderDiffusionConfig.from_dict(saved["model_config"])
    except (KeyError, TypeError, ValueError):
        return None


def _restore(run: _Run, state: _State) -> None:
    """Continue a checkpoint (see :func:`_resume_point`), or start from ``init_from``'s weights, or do nothing.

    A portable checkpoint (no optimiser state) restarts Adam's moments, so the learning rate warms up again.
    """
    cfg = run.cfg
    resume = _resume_point(run)
    if resume is not None:
        saved = json.loads((resume / "state.json").read_text())
        if _saved_model_config(saved) != cfg.model:
            raise ValueError(f"{resume} was trained with a different model config; use a new out_dir")
        restored = load_training_state(resume, state.model, state.ema.shadow, state.optimizer)
        state.step = restored["step"]
        state.images_seen = restored.get("images_seen", state.step * cfg.batch_size * run.world)
        if not restored["optimizer_restored"]:
            state.warmup_start = state.step
    elif cfg.init_from:
        start = RenderDiffusion.from_pretrained(cfg.init_from)
        for target in (state.model, state.ema.shadow):
            load_init_weights(target, start, cfg.init_from)


def load_init_weights(model: RenderDiffusion, start: RenderDiffusion, source: str) -> None:
    """Load ``init_from``'s model ``start`` into ``model``: the same config, or one that only switches on
    ``ENCODER_EXTENSIONS`` that ``start`` does not use (their new modules keep their no-op initialisation), or
    replaces a one-colour background by the per-ray one (which starts as ``start``'s colour)."""
    cfg, base = model.config, start.config
    new_ray_background = cfg.background == "ray" and base.background != "ray"
    if base != cfg:
        switched = {name: getattr(cfg, name) for name in ENCODER_EXTENSIONS}
        if new_ray_background:
            switched.update(background="ray", background_init=cfg.background_init)
        same_otherwise = replace(base, **switched) == cfg
        only_new = (base.ray_conditioning in (False, cfg.ray_conditioning)
                    and (base.lift_features == 0 or (base.lift_features, base.lift_depths)
                         == (cfg.lift_features, cfg.lift_depths)))
        if not (same_otherwise and only_new):
            raise ValueError(f"init_from {source!r} has a different model config than this run (a fine-tune may "
                             f"only switch on {', '.join(ENCODER_EXTENSIONS[:2])} or background = 'ray')")
    weights = start.state_dict()
    if new_ray_background:
        weights.pop("renderer.background_logit", None)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    new_modules = EXTENSION_MODULES + (("renderer.ray_background.",) if new_ray_background else ())
    stray = [k for k in missing if not k.startswith(new_modules)] + list(unexpected)
    if stray:
        raise ValueError(f"init_from {source!r}: its weights do not match the model: {stray[:5]}")
    if new_ray_background:  # the per-ray background starts as the colour ``start`` rendered everywhere
        colour = start.renderer.background(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))[0].detach()
        model.renderer.ray_background.set_constant(colour)


def _save_checkpoint(run: _Run, state: _State) -> None:
    """On rank 0: the resumable checkpoint, and the EMA model exported with ``save_pretrained``."""
    if run.is_main:
        extra = {"model_config": asdict(run.cfg.model), "images_seen": state.images_seen}
        save_training_state(run.ckpt_dir, state.model, state.ema.shadow, state.optimizer, state.step, extra)
        state.ema.shadow.save_pretrained(run.model_dir)


def _learning_rate(cfg: TrainConfig, step: int, warmup_start: int) -> float:
    """Linear warm-up over ``warmup_steps`` from ``warmup_start``, then constant."""
    return cfg.lr * min(1.0, (step - warmup_start + 1) / max(1, cfg.warmup_steps))


def _training_step(run: _Run, state: _State, ddp: nn.Module, batch: dict) -> _StepResult:
    """One optimiser step on ``batch`` (through ``ddp``, the model or its DDP wrapper), then the EMA update."""
    cfg, device = run.cfg, run.device
    images = batch["image"].to(device)
    cameras = Cameras(batch["c2w"].to(device), batch["fov_x"].to(device))
    lr = _learning_rate(cfg, state.step, state.warmup_start)
    for group in state.optimizer.param_groups:
        group["lr"] = lr * (cfg.extension_lr_scale if group.get("extension") else 1.0)
    state.model.train()
    t = random_training_timesteps(images.shape[0], cfg.model.timesteps, cfg.low_t_fraction, cfg.low_t_max, device)
    other = None
    if cfg.novel_view_weight > 0:
        other = (batch["other_image"].to(device),
                 Cameras(batch["other_c2w"].to(device), batch["other_fov_x"].to(device)))
    focus = None
    if cfg.object_ray_fraction > 0:
        focus = (focus_pixels(batch["mask"]), focus_pixels(batch["other_mask"]) if "other_mask" in batch else None)
    loss = diffusion_loss(ddp, images, cameras, cfg.rays_per_image, t, other, cfg.novel_view_weight,
                          focus, cfg.object_ray_fraction)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {state.step}")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    state.ema.update(state.model, state.step)
    state.step += 1
    state.images_seen += images.shape[0] * run.world
    return _StepResult(loss, grad_norm, lr)


def _after_step(run: _Run, state: _State, result: _StepResult, start: float, bar: tqdm, log: TextIO | None,
                preview: dict) -> None:
    """The per-step hooks: a log.jsonl line, a sample grid of the EMA model, a checkpoint, each when due."""
    cfg, step, device = run.cfg, state.step, run.device
    if log is not None and (step % cfg.log_every == 0 or step == 1):
        bar.set_postfix(loss=f"{result.loss.item():.4f}")
        rec = {"step": step, "loss": result.loss.item(), "grad_norm": float(result.grad_norm), "lr": result.lr,
               "elapsed_s": round(time.time() - start, 1)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
    if run.is_main and step % cfg.sample_every == 0:
        cams = Cameras(preview["c2w"].to(device), preview["fov_x"].to(device))
        save_samples(state.ema.shadow, preview["image"].to(device), cams, run.out / "samples" / f"{step:07d}.png")
    if step % cfg.checkpoint_every == 0:
        _save_checkpoint(run, state)


@contextmanager
def _sigterm_sets(event: threading.Event) -> Iterator[None]:
    """Inside, SIGTERM (a scheduler's pre-emption, ``kill``) sets ``event`` instead of ending the process.

    Only the main thread can install signal handlers: elsewhere this does nothing.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: event.set())
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_steps(run: _Run, state: _State, ddp: nn.Module, batches: Iterator[dict], start: float, bar: tqdm,
               log: TextIO | None, preview: dict) -> None:
    """Train until ``max_steps``, ``max_minutes``, SIGTERM (the step in progress finishes) or Ctrl-C.

    Returning means the run stopped cleanly (the caller then checkpoints); all ranks stop at the same step.
    """
    cfg = run.cfg
    stop_requested = threading.Event()
    with _sigterm_sets(stop_requested):
        try:
            while state.step < cfg.max_steps:
                out_of_time = cfg.max_minutes is not None and time.time() - start > 60 * cfg.max_minutes
                if _any_rank(stop_requested.is_set() or out_of_time, run.world, run.device):
                    break
                result = _training_step(run, state, ddp, next(batches))
                bar.update(1)
                _after_step(run, state, result, start, bar, log, preview)
        except KeyboardInterrupt:
            pass


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) according to ``cfg``; returns the exported EMA model folder."""
    run = _start_process(cfg)
    dataset, loader, sampler = _make_loader(run)
    state = _new_state(run)
    _restore(run, state)
    ddp = DistributedDataParallel(state.model) if run.world > 1 else state.model
    if run.is_main:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    preview = next(iter(DataLoader(dataset, batch_size=min(4, len(dataset)))))

    start = time.time()
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not progress or not run.is_main, desc="train",
               dynamic_ncols=True)
    log = open(run.out / "log.jsonl", "a") if run.is_main else None
    stopped_cleanly = False
    try:
        _run_steps(run, state, ddp, _infinite(loader, sampler), start, bar, log, preview)
        stopped_cleanly = True
    finally:
        bar.close()
        if stopped_cleanly:  # never overwrite a good checkpoint with the state of a failed step
            _save_checkpoint(run, state)
        if log is not None:
            log.close()
        _end_process(run)
    return run.model_dir
