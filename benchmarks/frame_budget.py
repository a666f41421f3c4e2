"""Where the time of one 64x64 frame (48+48 samples, 256^2 triplane) goes, kernel by kernel.

Run from the repository root:

    python benchmarks/frame_budget.py                  # threads 2 and 1
    python benchmarks/frame_budget.py --threads 2

It renders the scene of ``bench_render.py`` once while recording every point the renderer sends to the
field, then times, on exactly those points and in the same chunks as the inference field:

* the whole frame (``Scene.render``) and the field calls alone;
* the three kernels no exact float32 render can skip: the decoder's matrix products, its SiLU passes
  (timed as the MLP with activations minus the MLP without, so they run on data the products just wrote)
  and the triplane gather (``embedding_bag`` over 12 bilinear taps per point).

Their sum is a floor for this workload with these kernels; the rest of the frame is sampling, sorting,
compositing and the lookup's index maths. Writes ``benchmarks/results/frame_budget.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_render import cached_triplane, median_ms, release_config, write_report  # noqa: E402

from rdiff import RenderDiffusion  # noqa: E402
from rdiff.decoder import feature_major_layers  # noqa: E402
from rdiff.scene import Scene  # noqa: E402
from rdiff.triplane import TriplaneTable  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=8192, help="points per MLP chunk (as InferenceField)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frame_budget.json"))
    args = ap.parse_args(argv)

    cfg = release_config(image_size=64, triplane_size=256, coarse_samples=48, fine_samples=48)
    torch.manual_seed(0)
    model = RenderDiffusion(cfg).eval()
    planes, rotation, cam, _ = cached_triplane(model, 64)
    scene = Scene(model, planes, cam, rotation, acceleration="exact")
    scene.render(cam, 64)  # prepares the scene's inference field

    # Record the points of one frame (one tensor per field call) and time the field calls.
    inner = scene._field
    calls: list[torch.Tensor] = []
    field_time = [0.0]

    class Wrapped:
        """Stands in for the scene's inference field (same device), calling ``fn`` instead."""

        def __init__(self, fn) -> None:
            self.fn, self.device = fn, inner.device

        def __call__(self, points):
            return self.fn(points)

    def recording(points):
        calls.append(points.clone())
        return inner(points)

    def timing(points):
        t = time.perf_counter()
        out = inner(points)
        field_time[0] += time.perf_counter() - t
        return out

    scene._field = Wrapped(recording)
    scene.render(cam, 64)
    n_points = sum(c.shape[0] * c.shape[1] for c in calls)

    table = TriplaneTable(planes[None], cfg.scene_bound, cfg.triplane_aggregate)
    taps = [table.taps(c.reshape(-1, 3)) for c in calls]
    layers, w_out, _ = feature_major_layers(model.field.decoder, planes.dtype)
    widths = [w.shape[0] for w, _ in layers]
    chunks = [(i, min(i + args.chunk, c.shape[1])) for c in calls for i in range(0, c.shape[1], args.chunk)]
    feats = torch.randn(args.chunk, table.out_features)
    acts = [torch.randn(w * args.chunk) for w in widths]  # flat, viewed per chunk as in the inference field

    def gather():
        for idx, w in taps:
            for i in range(0, idx.shape[0], args.chunk):
                table.gather(idx[i : i + args.chunk], w[i : i + args.chunk])

    def mlp(activate: bool):
        for i, j in chunks:
            h = feats[: j - i].t()
            for (w, bias), a in zip(layers, acts):
                h = torch.mm(w, h, out=a[: w.shape[0] * (j - i)].view(w.shape[0], j - i))
                if activate:
                    h = F.silu(h if bias is None else h.add_(bias), inplace=True)
            torch.mm(w_out, h)

    def matmuls():
        mlp(activate=False)

    def matmuls_and_silu():
        mlp(activate=True)

    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "cores": os.cpu_count(),
              "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
              "points_per_frame": n_points, "field_calls_per_frame": len(calls), "runs": {}}
    print(f"{n_points} field points per frame in {len(calls)} field calls")
    for th in args.threads:
        torch.set_num_threads(th)
        with torch.inference_mode():
            scene._field = inner
            frame_ms = median_ms(lambda: scene.render(cam, 64), args.repeats)
            scene._field = Wrapped(timing)
            field_time[0] = 0.0
            scene.render(cam, 64)
            for _ in range(args.repeats):
                scene.render(cam, 64)
            field_ms = 1000 * field_time[0] / (args.repeats + 1)
            gather_ms = median_ms(gather, args.repeats)
            mm_ms = median_ms(matmuls, args.repeats)
            silu_ms = median_ms(matmuls_and_silu, args.repeats) - mm_ms  # SiLU (and one bias add) on hot data
        floor = gather_ms + mm_ms + silu_ms
        row = {"frame_ms": round(frame_ms, 1), "field_ms": round(field_ms, 1), "gather_ms": round(gather_ms, 1),
               "matmul_ms": round(mm_ms, 1), "silu_ms": round(silu_ms, 1), "kernel_floor_ms": round(floor, 1),
               "rest_ms": round(frame_ms - floor, 1)}
        report["runs"][f"threads={th}"] = row
        print(f"threads={th}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
