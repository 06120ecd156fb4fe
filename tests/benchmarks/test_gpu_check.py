"""benchmarks/gpu_check.py: its CPU smoke run writes the whole table, every number usable."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"

#: (section prefix, words of the check) of the rows every smoke run must have.
EXPECTED_ROWS = [
    ("cuda tests", "pytest -m cuda"),
    ("fine-tuning", "calib full vs plain loop"),
    ("fine-tuning", "calib full vs timm's train loop"),
    ("extraction", "extract vs plain no_grad loop"),
    ("extraction", "extract's logits = the plain loop's"),
    ("metrics 2,000 x 50", "accuracy_report top-1,5"),
    ("metrics 2,000 x 50", "top-1 / top-5 accuracy: calib vs torchmetrics"),
    ("metrics 2,000 x 50", "seen_absent_curve + AUSUC"),
    ("metrics 2,000 x 50", "curve and AUSUC on cpu = on the CPU"),
    ("metrics 2,000 x 50", "top-5 report at γ = 0.1"),
    ("metrics 2,000 x 50", "ALG γ vs a float64 formula"),
    ("metrics 500 x 300", "accuracy_report top-1,5"),
    ("streaming 2,000 x 50", "SeenAbsentState: 5 updates"),
    ("streaming 2,000 x 50", "SeenAbsentMetric (torchmetrics adapter)"),
    ("streaming 2,000 x 50", "top-1 / top-5 accuracy: state vs torchmetrics"),
    ("streaming 2,000 x 50", "state = full matrix (bit for bit)"),
    ("streaming 2,000 x 50", "state memory"),
    ("streaming 2,000 x 50", "ALG γ: state vs full matrix"),
    ("streaming 500 x 300", "SeenAbsentState: 2 updates"),
    ("CUDA behaviours", "resolve_precision(auto / True / off)"),
    ("CUDA behaviours", "train amp=auto: autocast dtype"),
    ("CUDA behaviours", "train amp=bf16: head output and logits in float32"),
    ("CUDA behaviours", "results meta: the GPU"),
    ("CUDA behaviours", "stage keys: fine-tuning / extraction precision"),
    ("CUDA behaviours", "cudnn_benchmark True / False"),
    ("CUDA behaviours", "deterministic=True: kernel switches"),
    ("CUDA behaviours", "deterministic=True: two test_resnet runs end bit-identical"),
    ("CUDA behaviours", "deterministic vs default training speed"),
    ("CUDA behaviours", "deterministic=True: ops torch warned"),
    ("CUDA behaviours", "deterministic=True: killed after epoch 1 and resumed"),
    ("CUDA behaviours", "after train(channels_last='auto')"),
    ("CUDA behaviours", "extract amp=bfloat16: head output dtype; logits vs features"),
    ("CUDA behaviours", "extraction_loader pins memory"),
    ("CUDA behaviours", "SyncBatchNorm conversion keeps timm's BatchNormAct2d"),
    ("CUDA behaviours", "SyncBatchNorm keeps frozen BatchNorm in eval mode"),
    ("CUDA behaviours", "NCCL group's timeout"),
    ("compile", "TrainConfig(compile=True)"),
]
TIMED_UNITS = ("img/s", "ms", "MiB")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["gpu_check"]


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (column -> cell) of the Markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    header, body = split[0], split[2:]
    assert lines[1].replace("|", "").replace("-", "") == ""
    return header, [dict(zip(header, cells, strict=True)) for cells in body]


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.mark.slow
def test_cpu_smoke_writes_every_row_with_usable_numbers(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.md"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert text in done.stdout  # the printed table is the written one
    assert "- device: CPU" in text and "- versions: torch " in text
    header, rows = table(text)
    assert header == list(gpu_check.COLUMNS)
    for section, words in EXPECTED_ROWS:
        assert any(r["section"].startswith(section) and words in r["check"] for r in rows), (
            section,
            words,
        )
    skipped = {r["section"]: r["result"] for r in rows if r["result"].startswith("skipped")}
    assert skipped == {
        "cuda tests": "skipped: no CUDA",
        "CUDA behaviours": "skipped: needs 2 GPUs (torchrun, NCCL)",
        "compile": "skipped: the CPU smoke run (inductor builds C++ for about a minute)",
    }
    for r in rows:
        assert r["result"] == "ok" or r["result"].startswith("skipped: "), r
        if r["unit"] in TIMED_UNITS:
            values = [number(r[k]) for k in ("calib", "reference", "ratio")]
            assert all(math.isfinite(v) and v > 0 for v in values), r
            assert number(r["ratio"]) == pytest.approx(values[0] / values[1], rel=0.01), r
    timed = [r for r in rows if r["unit"] == "img/s"]
    assert len(timed) == 4  # fine-tuning vs plain and timm, extraction, deterministic mode


def test_without_cuda_it_asks_for_the_smoke_run(gpu_check, tmp_path, capsys):
    # the tests run with CUDA hidden (tests/conftest.py)
    assert gpu_check.main(["--out", str(tmp_path / "t.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gpu_check: no CUDA device here; run with --cpu-smoke for the CPU smoke run"]
    assert not (tmp_path / "t.md").exists()


def test_the_cuda_tests_counts_are_read_from_pytest_s_report(gpu_check, tmp_path):
    (tmp_path / "test_three.py").write_text(
        "import pytest\n"
        "def test_passes(): assert True\n"
        "def test_fails(): assert False\n"
        "@pytest.mark.skip(reason='no')\n"
        "def test_skipped(): pass\n"
        "def test_passes_too(): pass\n"
    )
    report = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "test_three.py"],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )  # fmt: skip
    counts, failed = gpu_check.junit_counts(report)
    assert counts == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1}
    assert failed == ["test_three::test_fails"]
