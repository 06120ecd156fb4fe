"""benchmarks/demo_cpu_spread.py: it reads the demo's printed table and spreads it per cell."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "demo_cpu_spread.py"

PRINTED = """\
[calib-run] some log line | with a bar
| model                   |       γ |  all | absent |
|-------------------------|--------:|-----:|-------:|
| pre-trained             |  +0.000 | 57.2 |   63.5 |
| fine-tuned + γ (pcv)    |  +8.599 | 79.0 |   64.1 |

| second table | x |
|---|---|
| row | 1 |
"""


@pytest.fixture(scope="module")
def spread():
    spec = importlib.util.spec_from_file_location("demo_cpu_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_first_table_is_read_and_the_second_ignored(spread):
    header, rows = spread.first_table(PRINTED)
    assert header == ["model", "γ", "all", "absent"]
    assert rows == {
        "pre-trained": ["+0.000", "57.2", "63.5"],
        "fine-tuned + γ (pcv)": ["+8.599", "79.0", "64.1"],
    }
    with pytest.raises(RuntimeError, match="no table in the demo's output"):
        spread.first_table("no table here\n")


def test_spread_is_min_max_per_cell_and_one_value_where_all_agree(spread):
    header, rows = spread.first_table(PRINTED)
    other = {k: list(v) for k, v in rows.items()}
    other["fine-tuned + γ (pcv)"] = ["+9.390", "79.0", "61.5"]
    table = spread.spread_table(
        {"a": {"header": header, "rows": rows}, "b": {"header": header, "rows": other}}
    )
    assert "| pre-trained | +0.000 | 57.2 | 63.5 |" in table
    assert "| fine-tuned + γ (pcv) | +8.599 – +9.390 | 79.0 | 61.5 – 64.1 |" in table


def test_history_gains_are_last_minus_first_epoch_in_points(spread, tmp_path):
    rows = [
        {"epoch": 0, "acc_absent": 0.6, "acc_absent_absent": 0.75, "ncm_acc_seen": 0.8,
         "ncm_acc_absent": 0.9},
        {"epoch": 8, "acc_absent": 0.07, "acc_absent_absent": 0.86, "ncm_acc_seen": 0.95,
         "ncm_acc_absent": 0.892},
    ]  # fmt: skip
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert spread.history_gains(tmp_path) == ["-53.0", "+11.0", "+15.0", "-0.8"]


def test_unknown_variant_is_refused_by_name(spread, capsys):
    with pytest.raises(SystemExit):
        spread.main(["--variants", "native,avx1024"])
    assert "--variants: unknown ['avx1024']" in capsys.readouterr().err
