"""Peak memory and time of the curve + AUSUC + ALG, streamed in batches vs the whole matrix (issue 23).

    python benchmarks/bench_streaming.py                  # C = 21,843: N = 100,000 streamed,
                                                          # the whole matrix at N = 10,000
    python benchmarks/bench_streaming.py --out file.md    # also write the table (markdown)
    python benchmarks/bench_streaming.py --n 2000 --classes 500 --batch 250 --full-n 1000

Both paths compute the same three things from the same float32 logits: the exact seen–absent
curve and its AUSUC of target samples (labels in S and U), and ALG's γ of fine-tuning samples
(labels in S; the same logit rows with labels in S, so that no second data set is generated).

- ``streamed``: :class:`calib.metrics.streaming.SeenAbsentState` fed batch by batch (one state
  for the target labels, one ALG-only state, ``alg=True, keep_gaps=False``, for the training
  labels), then ``curve()``, ``ausuc``, ``alg_from_state``;
- ``whole``: the (N, C) matrix in memory, then :func:`calib.seen_absent_curve` and
  :func:`calib.selectors.select_alg`.

Each measurement runs in its own Python process, so that its peak RSS (``ru_maxrss``) is its
own. The logits are made from one random block of ``batch`` rows, rolled by a different
column shift per batch, with S raised and each label's logit raised (so the curve has hits):
cheap to make (random generation of 100,000 × 21,843 floats would take minutes here) and the
same rows in both paths. Making the batches is not timed; the time is the metric calls only.
At N = 100,000 the whole matrix would be 8.7 GB (float32): the whole path runs at ``--full-n``
and its peak at N is extrapolated by adding the logits of the other rows (a lower bound), its
time linearly in N (said in the table). The
time ratio compares both paths at ``--full-n``, where both fit, over ``--repeats`` alternating
runs (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def class_split(c: int, seed: int = 0) -> np.ndarray:
    """S: a random 46 % of the columns, scattered (as in bench_ratios.py)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(c)[: round(c * 30 / 65)])


class Batches:
    """Deterministic float32 batches (logits, target labels, training labels in S)."""

    def __init__(self, c: int, batch: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.c, self.batch = c, batch
        self.seen = class_split(c, seed)
        self.base = rng.standard_normal((batch, c), dtype=np.float32)
        self.bias = np.zeros(c, dtype=np.float32)
        self.bias[self.seen] = 2.0

    def get(self, i: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1000 + i)
        z = np.roll(self.base[:rows], (i * 7919) % self.c, axis=1)
        z += self.bias
        y = rng.integers(0, self.c, rows)
        z[np.arange(rows), y] += 3.0
        y_train = self.seen[rng.integers(0, self.seen.size, rows)]
        return z, y, y_train

    def chunks(self, n: int):
        for i, start in enumerate(range(0, n, self.batch)):
            yield self.get(i, min(self.batch, n - start))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def warm_up(seen_size: int) -> None:
    """Load the compiled kernels (numba's cache) before anything is timed."""
    from calib.metrics import seen_absent_curve
    from calib.selectors import select_alg

    z = np.random.default_rng(0).standard_normal((64, 8), dtype=np.float32)
    y = np.arange(64) % 8
    seen_absent_curve(z, y, [0, 1, 2])
    select_alg(z, y % 3, [0, 1, 2])


def run_streamed(n: int, c: int, batch: int) -> dict:
    from calib.metrics.streaming import SeenAbsentState, alg_from_state

    data = Batches(c, batch)
    warm_up(data.seen.size)
    baseline = peak_rss_mb()
    target = SeenAbsentState(c, data.seen)
    train = SeenAbsentState(c, data.seen, alg=True, keep_gaps=False)
    spent = 0.0
    for z, y, y_train in data.chunks(n):
        start = time.perf_counter()
        target.update(z, y)
        train.update(z, y_train)
        spent += time.perf_counter() - start
    start = time.perf_counter()
    curve = target.curve()
    area = curve.ausuc
    gamma, _ = alg_from_state(train)
    spent += time.perf_counter() - start
    state_bytes = sum(a.nbytes for s in (target, train) for a in s.columns().values())
    return {
        "seconds": spent,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "state_mb": state_bytes / 2**20,
        "ausuc": area,
        "alg": gamma,
    }


def run_whole(n: int, c: int, batch: int) -> dict:
    from calib.metrics import seen_absent_curve
    from calib.selectors import select_alg

    data = Batches(c, batch)
    warm_up(data.seen.size)
    baseline = peak_rss_mb()
    z = np.empty((n, c), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    y_train = np.empty(n, dtype=np.int64)
    at = 0
    for zb, yb, tb in data.chunks(n):
        rows = slice(at, at + len(yb))
        z[rows], y[rows], y_train[rows] = zb, yb, tb
        at += len(yb)
    del zb
    start = time.perf_counter()
    curve = seen_absent_curve(z, y, data.seen)
    area = curve.ausuc
    gamma, _ = select_alg(z, y_train, data.seen)
    spent = time.perf_counter() - start
    return {
        "seconds": spent,
        "peak_mb": peak_rss_mb(),
        "baseline_mb": baseline,
        "logits_mb": z.nbytes / 2**20,
        "ausuc": area,
        "alg": gamma,
    }


def run_ratio(n: int, c: int, batch: int, repeats: int = 5) -> dict:
    """Both paths on one (n, C) matrix in one process, alternating, ``repeats`` times each: the
    streamed path reads it in row blocks of ``batch`` (views, no copy), the whole path at once."""
    from calib.metrics import seen_absent_curve
    from calib.metrics.streaming import SeenAbsentState, alg_from_state
    from calib.selectors import select_alg

    data = Batches(c, batch)
    warm_up(data.seen.size)
    parts = list(data.chunks(n))
    z = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    y_train = np.concatenate([p[2] for p in parts])
    del parts
    times: dict[str, list[float]] = {"streamed": [], "whole": []}
    for _ in range(repeats):
        start = time.perf_counter()
        target = SeenAbsentState(c, data.seen)
        train = SeenAbsentState(c, data.seen, alg=True, keep_gaps=False)
        for at in range(0, n, batch):
            target.update(z[at : at + batch], y[at : at + batch])
            train.update(z[at : at + batch], y_train[at : at + batch])
        streamed = (target.curve().ausuc, alg_from_state(train)[0])
        times["streamed"].append(time.perf_counter() - start)
        start = time.perf_counter()
        whole = (seen_absent_curve(z, y, data.seen).ausuc, select_alg(z, y_train, data.seen)[0])
        times["whole"].append(time.perf_counter() - start)
    return {
        "streamed": statistics.median(times["streamed"]),
        "whole": statistics.median(times["whole"]),
        "same": streamed[0] == whole[0] and abs(streamed[1] - whole[1]) <= 1e-12 * abs(whole[1]),
    }


def in_process(kind: str, n: int, c: int, batch: int, *extra: int) -> dict:
    """One measurement in a fresh interpreter (its own peak RSS)."""
    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import bench_streaming as b; "
        f"print(json.dumps(b.run_{kind}({n}, {c}, {batch}{''.join(f', {e}' for e in extra)})))"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(f"{kind} N={n} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="samples streamed")
    parser.add_argument("--classes", type=int, default=21_843, help="C")
    parser.add_argument("--batch", type=int, default=1_000, help="rows per batch")
    parser.add_argument("--full-n", type=int, default=10_000, help="N of the whole-matrix path")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each at --full-n")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    n, c, batch, full_n = args.n, args.classes, args.batch, args.full_n
    if min(n, c, batch, full_n, args.repeats) < 1 or c < 3:
        parser.error("--n, --batch, --full-n, --repeats must be ≥ 1 and --classes ≥ 3")

    big = in_process("streamed", n, c, batch)
    small_streamed = in_process("streamed", full_n, c, batch)
    whole = in_process("whole", full_n, c, batch)
    ratio = in_process("ratio", full_n, c, batch, args.repeats)
    t_stream, t_whole = ratio["streamed"], ratio["whole"]
    logits_gb = n * c * 4 / 1e9
    logits_mb = n * c * 4 / 2**20  # MB below: MiB, as ru_maxrss counts
    # the whole path at N: its peak at --full-n plus the logits of the other rows (the O(N)
    # vectors it also holds are left out: a lower bound)
    whole_at_n = whole["peak_mb"] + (n - full_n) * c * 4 / 2**20
    same = ratio["same"] and small_streamed["ausuc"] == whole["ausuc"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = [
        "| path | N | time (s) | peak RSS (MB) | of the logits' size |",
        "|---|---:|---:|---:|---:|",
        f"| streamed, batches of {batch:,} | {n:,} | {big['seconds']:.1f} | "
        f"{big['peak_mb']:,.0f} | {big['peak_mb'] / logits_mb:.3f} |",
        f"| whole matrix | {n:,} | {whole['seconds'] * n / full_n:.1f} (extrapolated) | "
        f"{whole_at_n:,.0f} (extrapolated) | {whole_at_n / logits_mb:.3f} |",
        f"| streamed | {full_n:,} | {small_streamed['seconds']:.2f} | "
        f"{small_streamed['peak_mb']:,.0f} | |",
        f"| whole matrix | {full_n:,} | {whole['seconds']:.2f} | {whole['peak_mb']:,.0f} | |",
    ]
    lines = [
        f"C = {c:,} classes (|S| = {class_split(c).size:,}, scattered), float32 logits: "
        f"{logits_gb:.2f} GB at N = {n:,}.",
        "",
        *rows,
        "",
        f"- time streamed / whole at N = {full_n:,}: **{t_stream / t_whole:.2f}×** (goal ≤ "
        f"1.2×): medians of {args.repeats} alternating runs in one process on one matrix "
        f"({t_stream:.2f} s / {t_whole:.2f} s), the streamed path reading it in row blocks",
        f"- peak RSS streamed at N = {n:,}: **{big['peak_mb']:,.0f} MB = "
        f"{big['peak_mb'] / logits_mb * 100:.1f} %** of the logits "
        f"(goal ≤ 10 %); of it, the interpreter with numpy/numba/calib loaded "
        f"{big['baseline_mb']:,.0f} MB, the per-sample state {big['state_mb']:.1f} MB, the "
        f"rest the batches ({batch:,} × {c:,} float32 = {batch * c * 4 / 2**20:.0f} MB each)",
        f"- whole matrix at N = {n:,}: not run (it needs the {logits_gb:.1f} GB matrix); its "
        f"peak is extrapolated from N = {full_n:,} ({whole['peak_mb']:,.0f} MB, of which "
        f"logits {whole['logits_mb']:,.0f} MB) by adding the logits of the other rows (a lower "
        "bound), its time linearly in N",
        f"- the same AUSUC (exactly) and ALG γ (to 1e-12) from both paths at N = {full_n:,}: "
        f"{'yes' if same else 'NO'}",
        f"- CPU: {cpu_name()}, {os.cpu_count()} cores; 1-minute load average at the end: "
        f"{load:.1f}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
