"""benchmarks/alternatives_table.py's table: mean ± std over seeds, the rows, the noise line."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "alternatives_table.py"


def _module():
    spec = importlib.util.spec_from_file_location("alternatives_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_averages_seeds_and_states_the_noise(tmp_path):
    mod = _module()
    names = ("none", *mod.SELECTORS, *mod.CORRECTIONS)
    accs = {0: 0.5, 1: 0.6, 2: 0.7}
    for seed, acc in accs.items():
        rows = {
            n: {"acc_all": acc, "acc_seen": 0.9, "acc_absent": 0.2, "hmean": 0.3, "ece": 0.1,
                "ausuc": 0.4, "temperature": 1.0}
            for n in names
        }  # fmt: skip
        rows["none"].update({"n_samples": 100, "n_seen": 50, "n_absent": 50})
        record = {"task": "t", "method": "full", "seed": seed, "seconds": 3.0, "n_test": 100,
                  "rows": rows}  # fmt: skip
        folder = tmp_path / "t" / "full"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"seed{seed}.json").write_text(json.dumps(record))
    text = mod.table(tmp_path)
    mean, std = 100 * statistics.mean(accs.values()), 100 * statistics.stdev(accs.values())
    gla = next(line for line in text.splitlines() if "| + gla |" in line)
    assert f"| {mean:.1f} ± {std:.1f} |" in gla and "| 3 |" in gla
    assert "2 forward passes" in gla
    se = 100 * math.sqrt(0.5 * 0.5 / 100)
    assert f"Y/Y ±{se:.1f} (n = 100)" in text
    assert sum(line.startswith("| full |") for line in text.splitlines()) == len(names)
