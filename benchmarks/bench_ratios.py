"""Each metric's time as a multiple of one streaming read of the same logits (issue 13).

    python benchmarks/bench_ratios.py                 # 10k and 100k × 1,000, float32 and float64
    python benchmarks/bench_ratios.py --quick         # 10k × 1,000 only
    python benchmarks/bench_ratios.py --out file.md   # also write the table (markdown)
    python benchmarks/bench_ratios.py --only curve    # the read and the cases naming "curve"

The reference is ``a.max(axis=1)``: numpy's one pass over the N × C array (SIMD, one core).
Every function runs on the same array, S a random ~46 % of the columns (scattered, as the
ImageNet class orders are permutations), with repeats interleaved (read, f1, f2, ..., read,
f1, ...), so that a change in the machine's load hits all of them alike; the table gives
medians and each median's ratio to the read's median. ``numpy`` rows are the pure-numpy
implementations (calib without numba; the code before the one-pass kernels), ``torch`` a
blockwise masked-max alternative (gaps only), measured for the choice of approach.
``transform (out= reused buffer)`` is the same transform writing into one float64 array
passed as ``out=`` every time; the plain ``transform`` row allocates its output, as it must.
``seen_absent_curve weighted`` / ``macro`` are the curve with random sample weights and the
class-balanced curve; under each table, their time as a multiple of the unweighted curve's
(goal: ≤ 1.3 at 100k × 1,000).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

import calib
import calib.rules.kernels as _kernels
from calib.io import atomic_write_text
from calib.validation import check_logits


def synthetic(n: int, c: int, dtype: type, seed: int = 0):
    rng = np.random.default_rng(seed)
    seen = np.sort(rng.permutation(c)[: round(c * 30 / 65)])
    labels = rng.integers(0, c, size=n)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    logits[np.arange(n), labels] += 3.0
    logits[:, seen] += 2.0
    train = np.isin(labels, seen)
    return logits.astype(dtype), labels, seen, train


def torch_gaps(z: np.ndarray, seen: np.ndarray, block: int = 256) -> np.ndarray:
    """Gaps by torch: add a 0/-inf row per group to a block, one contiguous max each."""
    import torch

    t = torch.from_numpy(z)
    c = z.shape[1]
    is_seen = torch.zeros(c, dtype=torch.bool)
    is_seen[torch.from_numpy(seen)] = True
    bias_o = torch.where(is_seen, 0.0, -torch.inf).to(t.dtype)
    bias_u = torch.where(is_seen, -torch.inf, 0.0).to(t.dtype)
    gap = torch.empty(z.shape[0], dtype=torch.float64)
    for start in range(0, z.shape[0], block):
        rows = t[start : start + block]
        best_o = (rows + bias_o).max(dim=1)
        best_u = (rows + bias_u).max(dim=1)
        gap[start : start + block] = best_o.values.double() - best_u.values.double()
    return gap.numpy()


def cases(z, y, seen, train, weights) -> dict[str, Callable[[], object]]:
    z_train, y_train = z[train], y[train]  # the S samples: ALG's fine-tuning data
    alg = calib.LogitBiasCalibrator("alg").fit(z_train, y_train, seen)
    fixed = calib.LogitBiasCalibrator("fixed", gamma=alg.gamma_).fit(
        seen_classes=seen, num_classes=z.shape[1]
    )
    buffer = np.empty(z.shape, dtype=np.float64)
    return {
        "read a.max(axis=1)": lambda: z.max(axis=1),
        "check_logits": lambda: check_logits(z),
        "seen_absent_curve": lambda: calib.seen_absent_curve(z, y, seen),
        "seen_absent_curve weighted": lambda: calib.seen_absent_curve(
            z, y, seen, sample_weight=weights
        ),
        "seen_absent_curve macro": lambda: calib.seen_absent_curve(z, y, seen, average="macro"),
        "ausuc": lambda: calib.ausuc(z, y, seen),
        "accuracy_report top-1": lambda: calib.accuracy_report(z, y, seen, gamma=1.0, topk=(1,)),
        "accuracy_report top-1,5": lambda: calib.accuracy_report(z, y, seen, gamma=1.0),
        "fit alg (S rows)": lambda: calib.LogitBiasCalibrator("alg").fit(z_train, y_train, seen),
        "fit prior": lambda: calib.LogitBiasCalibrator("prior").fit(z, seen_classes=seen),
        "fit oracle": lambda: calib.LogitBiasCalibrator("oracle").fit(z, y, seen),
        "predict": lambda: fixed.predict(z),
        "transform (float64 out)": lambda: fixed.transform(z),
        # the same call writing into one float64 buffer reused across calls (no page faults)
        "transform (out= reused buffer)": lambda: fixed.transform(z, out=buffer),
    }


def measure(
    z, y, seen, train, repeat: int, numpy_too: bool, only: str | None = None
) -> list[tuple[str, float]]:
    """(name, median seconds) for every case (with ``only``: the read and the cases whose
    name holds it), repeats interleaved."""
    weights = np.random.default_rng(1).random(y.size)
    fns = cases(z, y, seen, train, weights)
    fns["gaps: torch blockwise"] = lambda: torch_gaps(z, seen)
    if only is not None:
        first = next(iter(fns))
        fns = {k: f for k, f in fns.items() if k == first or only in k}
    for fn in fns.values():  # warm-up: numba's compiled kernels are loaded on first call
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    slow = ("seen_absent_curve", "accuracy_report top-1,5", "predict", "transform (float64 out)")
    slow = tuple(name for name in slow if name in fns)
    for name in slow if numpy_too else ():
        times[f"{name} [numpy]"] = []
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        if numpy_too:
            build = _kernels._build
            _kernels._build = lambda: None
            try:
                for name in slow:
                    start = time.perf_counter()
                    fns[name]()
                    times[f"{name} [numpy]"].append(time.perf_counter() - start)
            finally:
                _kernels._build = build
    return [(name, statistics.median(ts)) for name, ts in times.items()]


def _curve_ratios(medians: dict[str, float]) -> list[str]:
    """Lines giving the weighted and the class-balanced curve as multiples of the plain one."""
    plain = medians.get("seen_absent_curve")
    if plain is None:
        return []
    names = [n for n in ("seen_absent_curve weighted", "seen_absent_curve macro") if n in medians]
    return [""] + [
        f"- {name} ÷ seen_absent_curve: {medians[name] / plain:.2f} (goal ≤ 1.3)" for name in names
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 × 1,000 only")
    parser.add_argument("--repeat", type=int, default=15, help="interleaved repeats (median)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--only", default=None, help="only the cases whose name holds this")
    parser.add_argument("--float32-only", action="store_true", help="float32 logits only")
    args = parser.parse_args()

    sizes = [10_000] if args.quick else [10_000, 100_000]
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"numba kernels: {_kernels.available()}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    lines = []
    for n in sizes:
        for dtype in (np.float32,) if args.float32_only else (np.float32, np.float64):
            problem = synthetic(n, 1_000, dtype)
            repeat = args.repeat if n <= 10_000 else max(5, args.repeat // 3)
            # the numpy rows at 100k take minutes (transform allocates 3 N x C float64 arrays)
            results = measure(*problem, repeat, numpy_too=n <= 10_000, only=args.only)
            read = results[0][1]
            head = f"N = {n:,}, C = 1,000, {np.dtype(dtype).name} ({repeat} interleaved repeats)"
            block = [head, "", "| function | median | × read |", "|---|---:|---:|"]
            block += [f"| {name} | {t * 1e3:.1f} ms | {t / read:.2f} |" for name, t in results]
            block += _curve_ratios(dict(results))
            print("\n".join(block), flush=True)
            lines += [*block, ""]
    lines.append(f"load after the run: {os.getloadavg()[0]:.2f}")
    print(lines[-1])
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
