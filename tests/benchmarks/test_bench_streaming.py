"""benchmarks/bench_streaming.py at tiny sizes: both paths give the same numbers, the batches are
the same rows in both, and the script prints and writes its table (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_streaming.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_streaming", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_streaming"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_streaming"]


def test_the_batches_are_deterministic_and_cover_n_rows(bench):
    a, b = bench.Batches(50, 16), bench.Batches(50, 16)
    parts = list(a.chunks(40))
    assert [len(y) for _, y, _ in parts] == [16, 16, 8]
    for (za, ya, ta), (zb, yb, tb) in zip(parts, b.chunks(40), strict=True):
        np.testing.assert_array_equal(za, zb)
        np.testing.assert_array_equal(ya, yb)
        assert np.isin(ta, a.seen).all()  # training labels in S (ALG's data)
        assert za.dtype == np.float32


def test_both_paths_give_the_same_numbers(bench):
    streamed = bench.run_streamed(300, 40, 64)
    whole = bench.run_whole(300, 40, 64)
    assert streamed["ausuc"] == whole["ausuc"]
    assert streamed["alg"] == pytest.approx(whole["alg"], rel=1e-12)
    assert bench.run_ratio(300, 40, 64, 1)["same"]


@pytest.mark.slow  # four fresh interpreters: ~15 s under load
def test_the_script_prints_and_writes_its_table(bench, tmp_path):
    out = tmp_path / "table.md"
    text = bench.main(
        [
            "--n",
            "400",
            "--classes",
            "30",
            "--batch",
            "64",
            "--full-n",
            "200",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert out.read_text() == text + "\n"
    assert "| streamed, batches of 64 | 400 |" in text
    assert "from both paths at N = 200: yes" in text
