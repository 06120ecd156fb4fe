"""benchmarks/bench_kernel_isa.py: its table on a tiny input, and the packed-key loop compiled
to vector instructions (a 64-bit integer max: vpmaxsq with AVX-512F, compare + blend without)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_kernel_isa.py"

pytest.importorskip("numba")


def test_it_prints_the_cpu_the_instructions_and_every_ratio(tmp_path):
    out = tmp_path / "isa.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "300", "--c", "64", "--repeat", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    for row in ("| avx512f |", "| llvm cpu |", "packed-key loop, one core", "scan_f32, 1 thread"):
        assert row in text
    ratios = [line for line in text.splitlines() if line.startswith("| ") and " ms |" in line]
    assert len(ratios) == 5
    assert ratios[0].endswith("| 1.00 |")  # the read against itself


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 instructions")
def test_the_packed_key_loop_is_vectorised():
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_kernel_isa as bench
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    one_row, _ = bench._serial_kernels()
    bits = np.arange(64, dtype=np.int32).reshape(1, 64)
    counts = bench.instruction_counts(one_row, bits, np.arange(64) % 2 == 0)
    # either the native 64-bit max (AVX-512F) or its AVX2 form; scalar code has neither
    assert counts["vpmaxsq"] + counts["vpcmpgtq"] > 0, counts
    assert counts["%ymm"] + counts["%zmm"] > 0, counts
