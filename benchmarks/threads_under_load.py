"""One model call (a t_r = 0 reconstruction of the release model) with fixed threads vs rdiff's load-aware choice,
on an idle machine and with busy-loop processes adding load (as another user's job would).

    python benchmarks/threads_under_load.py            # load 0 and 10 extra busy processes (~2 min)
    python benchmarks/threads_under_load.py --loads 0 4 10

Writes results/threads_under_load.json. What to look for: under load, 2 threads collapse (OpenMP threads
wait on each other) while the load-aware choice drops to 1 thread and stays fast.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from bench_render import median_ms, write_report  # noqa: E402

from rdiff import RenderDiffusion  # noqa: E402
from rdiff.cameras import orbit_cameras  # noqa: E402
from rdiff.sampling import reconstruct  # noqa: E402
from rdiff.threads import auto_threads  # noqa: E402


def _spin(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 10], help="extra busy processes")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads_under_load.json"))
    args = parser.parse_args()
    model = RenderDiffusion.from_pretrained(str(ROOT / "weights" / "clevr1-32"))
    m = model.config.image_size
    image = torch.rand(1, 3, m, m) * 2 - 1
    cam = orbit_cameras(30.0, 30.0, 3.0, model.config.default_fov_x)

    def call() -> None:
        reconstruct(model, image, cam, t_r=0)

    rows = []
    for load in args.loads:
        procs = [mp.Process(target=_spin, args=(time.time() + 600,), daemon=True) for _ in range(load)]
        for p in procs:
            p.start()
        time.sleep(20 if load else 0)  # let the 1-minute load average see the busy processes
        try:
            chosen = auto_threads()
            row = {"extra_busy_processes": load, "loadavg_1m": os.getloadavg()[0], "auto_threads": chosen}
            for name, threads in (("threads=2", 2), ("threads=1", 1), ("auto", chosen)):
                torch.set_num_threads(threads)
                row[f"{name}_ms"] = median_ms(call, args.repeats)
            rows.append(row)
            print(row)
        finally:
            for p in procs:
                p.terminate()
    write_report({"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "torch": torch.__version__, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
