"""Start-up of the command line: `calib-run --help`, and the demo from launch to its table.

    python benchmarks/bench_startup.py [--repeats 5] [--demo]

Prints the median wall time of ``python -m experiments.run --help`` (Hydra parses the command
line before torch loads), of ``import calib`` + ``calib.seen_absent_curve`` (no torch), and, with
``--demo``, of one digits demo from launch to its first log line and to its end, in a fresh
run folder and source cache (so the source model is trained too). Wall-clock numbers depend on
the machine and its load: the script prints both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _demo(env: dict) -> tuple[float, float]:
    """(seconds to the first log line, seconds to the end) of one fresh demo run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**env, "CALIB_CACHE_DIR": str(Path(tmp) / "cache")}
        cmd = [sys.executable, "-m", "experiments.run", f"run_dir={tmp}/run", "progress=false"]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        first = None
        for _line in proc.stdout:
            if first is None:
                first = time.perf_counter() - start
        proc.wait()
        if proc.returncode:
            raise SystemExit(f"the demo failed (exit {proc.returncode})")
        return first or float("nan"), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--demo", action="store_true", help="also time the digits demo (~1 min)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print(f"load average: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs")
    help_cmd = [sys.executable, "-m", "experiments.run", "--help"]
    light = [sys.executable, "-c", "import calib, numpy as np; calib.seen_absent_curve"]
    runs = {"calib-run --help": help_cmd, "import calib; calib.seen_absent_curve": light}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        for name, cmd in runs.items():
            times[name].append(_time(cmd, env))
    for name, values in times.items():
        print(f"{name:40s} median {statistics.median(values):6.2f} s  (min {min(values):.2f})")
    if args.demo:
        first, total = _demo(env)
        print(f"{'digits demo: first log line':40s} {first:6.2f} s")
        print(f"{'digits demo: whole run (fresh cache)':40s} {total:6.2f} s")


if __name__ == "__main__":
    main()
