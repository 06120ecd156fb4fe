"""Why the one-pass kernels cost more than one read on some CPUs: the instructions they compile to.

    python benchmarks/bench_kernel_isa.py              # 10,000 × 1,000 float32
    python benchmarks/bench_kernel_isa.py --out f.md   # also write the table (markdown)

The float32 kernel (:func:`calib.rules.numba_kernels.scan_f32`) takes per group the max of
packed int64 keys (:func:`~calib.rules.numba_kernels.packed_row32`): one vectorised integer
max/min per logit where the CPU has a 64-bit integer max (``vpmaxsq``, AVX-512F), a compare and
a blend per max where it has only AVX2 (``vpcmpgtq`` + ``vblendvpd``). This script prints:

- the CPU (model name, AVX2 / AVX-512F, LLVM's name for it) and numba's thread count;
- the instructions the packed-key row loop compiles to here (counted in numba's assembly of
  that loop compiled alone);
- medians of interleaved repeats, each as a multiple of the read ``a.max(axis=1)`` (numpy's
  SIMD pass, one core): the packed-key loop over every row on one core, the whole
  ``scan_f32`` kernel on one thread and on numba's threads, and ``calib.seen_absent_curve``.

So that a ratio measured on one CPU kind can be told apart from a ratio of another: the loop on
one core against the read on one core is the per-logit cost of the instructions; the rest is
what the threads buy back.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from collections.abc import Callable

import numpy as np

import calib
import calib.rules.kernels as _kernels
from calib.io import atomic_write_text

# the instructions that tell how a 64-bit integer max/min was compiled
_WATCH = ("vpmaxsq", "vpminsq", "vpcmpgtq", "vblendvpd", "vpblendvb")
_REGISTERS = ("zmm", "ymm", "xmm")  # uses of 512-, 256- and 128-bit registers


def cpu_description() -> dict[str, str]:
    """Model name, whether AVX2 / AVX-512F are present (Linux ``/proc/cpuinfo``), LLVM's CPU."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1).strip() if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else flags
    except OSError:
        pass
    import llvmlite.binding as llvm

    return {
        "model": model,
        "avx2": "yes" if "avx2" in flags else "no",
        "avx512f": "yes" if "avx512f" in flags else "no",
        "llvm cpu": llvm.get_host_cpu_name(),
        "cores (os.cpu_count)": str(os.cpu_count()),
    }


def _serial_kernels():
    """The packed-key row loop compiled alone (for its assembly) and over all rows on one core."""
    from numba import njit

    from calib.rules.numba_kernels import packed_row32

    @njit(cache=False, boundscheck=False)
    def one_row(row, is_absent):
        return packed_row32(row, is_absent)

    @njit(cache=False, boundscheck=False)
    def all_rows(bits, is_absent):
        s = np.int64(0)
        for i in range(bits.shape[0]):
            p0, p1, pmin = packed_row32(bits[i], is_absent)
            s ^= p0 ^ p1 ^ pmin
        return s

    return one_row, all_rows


def instruction_counts(one_row, bits: np.ndarray, is_absent: np.ndarray) -> dict[str, int]:
    one_row(bits[0], is_absent)
    asm = "\n".join(one_row.inspect_asm().values())
    counts = {name: len(re.findall(rf"\b{name}\b", asm)) for name in _WATCH}
    counts.update({f"%{r}": len(re.findall(rf"%{r}\d+", asm)) for r in _REGISTERS})
    return counts


def interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each case, repeats interleaved (a change in load hits all alike)."""
    for f in cases.values():
        f()  # compile, warm caches
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, f in cases.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--c", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args()

    if not _kernels.available():  # also picks numba's threading layer, as calib does
        raise SystemExit("numba is not installed: calib runs its numpy code, no kernel to read")
    import numba

    from calib.rules import numba_kernels as nk

    rng = np.random.default_rng(0)
    n, c = args.n, args.c
    z = rng.standard_normal((n, c), dtype=np.float32)
    labels = rng.integers(0, c, size=n)
    seen = np.sort(rng.permutation(c)[: round(c * 30 / 65)])
    is_absent = np.ones(c, dtype=bool)
    is_absent[seen] = False
    bits = z.view(np.int32)
    no_cross = np.zeros(1, np.int64)
    one_row, all_rows = _serial_kernels()
    threads = numba.get_num_threads()

    def scan(k: int) -> Callable[[], object]:
        def run() -> object:
            numba.set_num_threads(k)
            try:
                return nk.scan_f32(z, bits, is_absent, labels, 0.0, False, no_cross)
            finally:
                numba.set_num_threads(threads)

        return run

    cases = {
        "read a.max(axis=1) (numpy, one core)": lambda: z.max(axis=1),
        "packed-key loop, one core": lambda: all_rows(bits, is_absent),
        "scan_f32, 1 thread": scan(1),
        f"scan_f32, {threads} threads": scan(threads),
        "calib.seen_absent_curve": lambda: calib.seen_absent_curve(z, labels, seen),
    }
    medians = interleaved(cases, args.repeat)
    read = medians["read a.max(axis=1) (numpy, one core)"]

    lines = [f"N = {n:,}, C = {c:,}, float32, {args.repeat} interleaved repeats", ""]
    lines += ["| CPU | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in cpu_description().items()]
    lines += [f"| numba threads | {threads} ({numba.threading_layer()}) |", ""]
    counts = instruction_counts(one_row, bits, is_absent)
    lines += ["Instructions in the packed-key row loop (numba's assembly, the loop alone):", ""]
    lines += ["| " + " | ".join(counts) + " |", "|" + "---:|" * len(counts)]
    lines += ["| " + " | ".join(str(v) for v in counts.values()) + " |", ""]
    lines += ["| case | median | × read |", "|---|---:|---:|"]
    for name, t in medians.items():
        lines.append(f"| {name} | {t * 1e3:.2f} ms | {t / read:.2f} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"load average after the run: {load:.2f}"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
