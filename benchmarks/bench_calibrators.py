"""Time the γ selectors and the calibrator's transform/predict on synthetic logits.

    python benchmarks/bench_calibrators.py                 # 10,000 x 1,000 (ImageNet-S test size)
    python benchmarks/bench_calibrators.py --n 2000 --c 65 --naive

``--naive`` also times the release's way of choosing the oracle γ (recompute the accuracy
at every breakpoint, O(N²·C)) on the first ``--naive-n`` samples, and checks that it
reaches the same accuracy as the exact selector.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from calib.estimator.calibrator import LogitBiasCalibrator
from calib.selectors import PseudoSplit


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in seconds."""
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def synthetic(n: int, c: int, n_seen: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits whose seen columns are inflated, as after fine-tuning; labels uniform."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    logits[np.arange(n), labels] += 3.0
    logits[:, :n_seen] += 2.0
    return logits, labels


def naive_oracle_accuracy(logits: np.ndarray, labels: np.ndarray, absent: np.ndarray) -> float:
    """Best acc_all over every breakpoint, recomputing the argmax each time (the release's way)."""
    mask = np.zeros(logits.shape[1], dtype=bool)
    mask[absent] = True
    gaps = logits[:, ~mask].max(1).astype(np.float64) - logits[:, mask].max(1)
    candidates = np.concatenate([[gaps.min() - 1], np.unique(gaps) + 1e-9])
    best = 0.0
    for gamma in candidates:
        shifted = logits + gamma * mask
        best = max(best, float((shifted.argmax(1) == labels).mean()))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="samples")
    parser.add_argument("--c", type=int, default=1_000, help="classes")
    parser.add_argument("--seen", type=int, default=None, help="|S| (default C/2)")
    parser.add_argument("--splits", type=int, default=3, help="PCV pseudo splits")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive", action="store_true", help="also time the per-breakpoint scan")
    parser.add_argument("--naive-n", type=int, default=2_000)
    args = parser.parse_args()

    n_seen = args.seen or args.c // 2
    seen = np.arange(n_seen)
    logits, labels = synthetic(args.n, args.c, n_seen, seed=0)
    train = np.isin(labels, seen)
    splits = []
    for j in range(args.splits):
        z, _ = synthetic(args.n, args.c, n_seen // 2, seed=j + 1)
        y = np.random.default_rng(j).choice(seen, size=args.n)
        splits.append(PseudoSplit(z, y, seen[: n_seen // 2], np.arange(n_seen // 2, args.c)))

    fits = {
        "alg": lambda: LogitBiasCalibrator("alg").fit(logits[train], labels[train], seen),
        "oracle (acc_all)": lambda: LogitBiasCalibrator("oracle").fit(logits, labels, seen),
        "oracle (hmean)": lambda: LogitBiasCalibrator("oracle", criterion="hmean").fit(
            logits, labels, seen
        ),
        "prior": lambda: LogitBiasCalibrator("prior").fit(logits, None, seen),
        f"pcv ({args.splits} splits)": lambda: LogitBiasCalibrator("pcv").fit(
            pseudo_splits=splits, seen_classes=seen
        ),
    }
    print(f"logits {args.n} x {args.c} float32, |S| = {n_seen}; best of {args.repeat} runs")
    print(f"{'step':<24}{'seconds':>10}")
    for name, fit in fits.items():
        print(f"{name:<24}{timed(fit, args.repeat):>10.4f}")
    cal = LogitBiasCalibrator("oracle").fit(logits, labels, seen)
    print(f"{'transform':<24}{timed(lambda: cal.transform(logits), args.repeat):>10.4f}")
    print(f"{'predict':<24}{timed(lambda: cal.predict(logits), args.repeat):>10.4f}")

    if args.naive:
        m = min(args.naive_n, args.n)
        z, y = logits[:m], labels[:m]
        exact = LogitBiasCalibrator("oracle").fit(z, y, seen)
        start = time.perf_counter()
        naive = naive_oracle_accuracy(z, y, exact.absent_classes_)
        naive_s = time.perf_counter() - start
        exact_s = timed(lambda: LogitBiasCalibrator("oracle").fit(z, y, seen), args.repeat)
        print(
            f"oracle on {m} x {args.c}: exact {exact_s:.4f} s (acc_all {exact.info_['value']:.4f}), "
            f"per-breakpoint scan {naive_s:.2f} s (acc_all {naive:.4f})"
        )


if __name__ == "__main__":
    main()
