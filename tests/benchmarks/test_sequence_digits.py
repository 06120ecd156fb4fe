"""benchmarks/sequence_digits.py: its stage parsing, its seed statistics and its merge mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sequence_digits.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sequence_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stage(seen, gammas, absent):
    """One stage's numbers: each row's γ, and Acc U/Y ``absent`` (others fixed)."""
    return {
        "seen": seen,
        **{
            row: {
                "gamma": g,
                "acc_seen": 0.9,
                "acc_absent": a,
                "acc_all": 0.8,
                "acc_absent_absent": 1.0,
            }
            for row, g, a in zip(("none", "alg", "pcv", "oracle"), gammas, absent, strict=True)
        },
    }


def _seed(shift):
    seq = [_stage([0, 1], [0, 1 + shift, 2, 3], [0.1, 0.2, 0.3, 0.4]),
           _stage([0, 1, 2], [0, 2, 3, 4 + shift], [0.0, 0.5, 0.5, 0.6])]  # fmt: skip
    return {"sequence": seq, "one_shot": []}


def test_stages_are_parsed(bench):
    assert bench.parse_classes("0-4") == [0, 1, 2, 3, 4]
    assert bench.parse_classes("0,2,5") == [0, 2, 5]


def test_the_tables_hold_the_seed_mean_and_sd(bench):
    runs = [_seed(0.0), _seed(2.0)]
    text = bench.stage_tables(runs)
    assert "stage 1: S = [0, 1] (2 seeds)" in text and "stage 2: S = [0, 1, 2]" in text
    # stage 1, alg: γ 1 and 3 -> mean 2, sd (ddof 1) sqrt(2)
    assert f"| sequence | alg | 2.00 ± {np.sqrt(2):.2f} | 90.0 ± 0.0 | 20.0 ± 0.0 |" in text
    means = bench.mean_reports(runs)
    assert means[1]["oracle"]["gamma"] == pytest.approx(5.0)
    assert means[0]["pcv"]["acc_absent"] == pytest.approx(0.3)


def test_merge_prints_the_saved_seeds_together(bench, tmp_path, capsys):
    paths = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"seeds": [seed], "stages": [], "runs": [_seed(shift)]}))
        paths.append(str(path))
    out = bench.main(["--merge", *paths, "--figure", str(tmp_path / "f.png")])
    assert out["seeds"] == [0, 1]
    assert "(2 seeds)" in capsys.readouterr().out
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
