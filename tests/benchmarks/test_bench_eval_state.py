"""benchmarks/bench_eval_state.py: both modes run on a tiny input and agree on every γ and row."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_eval_state.py"


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(SCRIPT), mode, "600", "40"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_full_and_state_agree():
    full, state = _run("full"), _run("state")
    assert full["mode"] == "full" and state["mode"] == "state"
    assert full["gammas"].keys() == state["gammas"].keys() == {"alg", "prior", "oracle"}
    for name, gamma in full["gammas"].items():
        assert math.isclose(state["gammas"][name], gamma, rel_tol=1e-9, abs_tol=1e-12), name
    for key in ("ft_acc_all", "ausuc"):
        assert math.isclose(state[key], full[key], rel_tol=1e-12, abs_tol=1e-15), key
    assert state["peak_over_base_MB"] >= 0 and full["peak_over_base_MB"] >= 0
