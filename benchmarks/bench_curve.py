"""Time the exact seen–absent curve + AUSUC against the release's per-breakpoint sweep.

    python benchmarks/bench_curve.py                  # N ∈ {1k, 2k, 5k} × C ∈ {65, 1000}, then N to 100k
    python benchmarks/bench_curve.py --quick          # small sizes, seconds
    python benchmarks/bench_curve.py --out results.md # also write the tables (markdown)

``calib.seen_absent_curve`` sorts the per-sample gaps once: O(N·C + N log N). The sweep
below is the way the authors' release traces the curve: for every breakpoint γ it adds γ
to the absent columns and recomputes the argmax accuracies of all N samples, O(N²·C)
(vectorised with numpy per breakpoint, which is what that loop costs at best). To trace
the same step function without ties it evaluates γ between consecutive breakpoints and
beyond both ends; both AUSUCs must agree to 1e-9 (asserted). Same logits for both.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from collections.abc import Callable

import numpy as np

import calib
from calib.io import atomic_write_text


def synthetic(n: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits float32 (N, C), labels (N,), seen classes): fine-tuned-looking logits.

    Labels are uniform over all C classes; the true class gets a margin, and a random half
    of the classes (S, about 30 of 65 as in Office-Home) is inflated as fine-tuning does, so
    the absent samples are mostly wrong at γ = 0 and the curve is far from trivial.
    """
    rng = np.random.default_rng(seed)
    seen = np.sort(rng.permutation(c)[: round(c * 30 / 65)])
    labels = rng.integers(0, c, size=n)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits[np.arange(n), labels] += 3.0
    logits[:, seen] += 2.0
    return logits, labels, seen


def naive_ausuc(logits: np.ndarray, labels: np.ndarray, seen: np.ndarray) -> float:
    """AUSUC by recomputing every accuracy at every breakpoint of γ: O(N²·C)."""
    absent = np.ones(logits.shape[1], dtype=bool)
    absent[seen] = False
    z = logits.astype(np.float64)
    gaps = np.unique(z[:, ~absent].max(axis=1) - z[:, absent].max(axis=1))
    gammas = np.concatenate([[gaps[0] - 1.0], (gaps[:-1] + gaps[1:]) / 2, [gaps[-1] + 1.0]])
    label_seen, label_absent = np.isin(labels, seen), absent[labels]
    acc_seen, acc_absent = np.empty(gammas.size), np.empty(gammas.size)
    shift = absent.astype(np.float64)
    for k, gamma in enumerate(gammas):
        right = (z + gamma * shift).argmax(axis=1) == labels
        acc_seen[k] = right[label_seen].mean()
        acc_absent[k] = right[label_absent].mean()
    return float(np.sum((acc_seen[:-1] - acc_seen[1:]) * (acc_absent[:-1] + acc_absent[1:])) / 2)


def exact_ausuc(logits: np.ndarray, labels: np.ndarray, seen: np.ndarray) -> float:
    return calib.seen_absent_curve(logits, labels, seen).ausuc


def machine() -> str:
    """CPU model and core count, e.g. 'Intel(R) Xeon(R) Processor, 2 cores'."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def best_time(fn: Callable[..., float], args: tuple, repeat: int) -> tuple[float, float]:
    """(best wall time in seconds over ``repeat`` calls of ``fn(*args)``, the value returned)."""
    best, value = np.inf, float("nan")
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, value


def compare(sizes: list[tuple[int, int]], repeat: int) -> list[str]:
    rows = [
        "| N | C | exact curve + AUSUC | naive sweep | speed-up | AUSUC |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted({c for _, c in sizes}):
        for n in sorted(n for n, cc in sizes if cc == c):
            problem = synthetic(n, c)
            t_exact, a_exact = best_time(exact_ausuc, problem, repeat)
            t_naive, a_naive = best_time(naive_ausuc, problem, 1)
            assert abs(a_exact - a_naive) <= 1e-9, (n, c, a_exact, a_naive)
            rows.append(
                f"| {n:,} | {c:,} | {t_exact * 1e3:.2f} ms | {t_naive:.2f} s "
                f"| {t_naive / t_exact:,.0f}× | {a_exact:.6f} |"
            )
            print(rows[-1], flush=True)
    return rows


def exact_only(ns: list[int], c: int, repeat: int) -> list[str]:
    rows = ["| N | C | exact curve + AUSUC | curve points |", "|---:|---:|---:|---:|"]
    for n in ns:
        problem = synthetic(n, c)
        t, _ = best_time(exact_ausuc, problem, repeat)
        points = len(calib.seen_absent_curve(*problem))
        rows.append(f"| {n:,} | {c:,} | {t * 1e3:.1f} ms | {points:,} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many exact runs")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args()

    if args.quick:
        sizes = [(n, c) for n in (500, 1000) for c in (65, 200)]
        large, large_c = [5_000], 200
    else:
        sizes = [(n, c) for n in (1_000, 2_000, 5_000) for c in (65, 1_000)]
        large, large_c = [10_000, 20_000, 50_000, 100_000], 1_000

    print("exact curve vs naive sweep (same logits; times: best of runs)", flush=True)
    table = compare(sizes, args.repeat)
    print(f"\nexact curve alone, C = {large_c:,}", flush=True)
    table_large = exact_only(large, large_c, args.repeat)

    if args.out:
        header = (
            f"Measured {datetime.date.today().isoformat()} on {machine()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}."
        )
        atomic_write_text(args.out, "\n".join([header, "", *table, "", *table_large, ""]))


if __name__ == "__main__":
    main()
