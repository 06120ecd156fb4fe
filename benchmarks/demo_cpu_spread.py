"""How much the demo's table moves with the CPU's float kernels: run it under emulated kernels.

    python benchmarks/demo_cpu_spread.py [--out-root /tmp/demo_spread] [--variants a,b,...]
        [--extra key=value ...] [--json spread.json]

Runs ``calib-run`` (the offline digits demo, ``make demo``) once per kernel variant, one after
the other, each with its own run folder and its own source-model cache (``cache_dir``), so
no variant reuses a source model trained under another kernel. A variant is a set of
environment variables that this one machine honours to imitate another CPU:

- ``ATEN_CPU_CAPABILITY``: torch's own CPU kernel dispatch (``default`` = no SIMD, ``avx2``,
  ``avx512`` where the CPU has it);
- ``MKL_ENABLE_INSTRUCTIONS`` / ``MKL_CBWR``: the code path of MKL's BLAS (the matmuls);
- ``ONEDNN_MAX_CPU_ISA``: oneDNN's (the convolutions');
- ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``: the thread count, which changes how sums split.

It parses the first table that the demo prints (the accuracy table), then prints, per row and
column, the value of every variant and the spread (min–max), with the CPU model (from
``/proc/cpuinfo``) and the date. The first variant also times the cached rerun (source model
already in its cache) beside the first run (source model trained). Each first run trains the
source model (≈ 80 s on a 2-core EPYC), so the default set takes about 15 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALIB_RUN = Path(sys.executable).with_name("calib-run")

# name -> environment overrides; "native" is whatever this machine picks by itself.
VARIANTS: dict[str, dict[str, str]] = {
    "native": {},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "mkl-sse4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "mkl-cbwr-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1-thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "all-scalar": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
}

ROW = re.compile(r"^\|(.+)\|\s*$")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), with the number of logical CPUs."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = name.group(1).strip() if name else platform.processor() or "unknown CPU"
    except OSError:
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} logical CPUs"


def first_table(stdout: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and rows (model name -> cells) of the first markdown table in ``stdout``."""
    header: list[str] | None = None
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        m = ROW.match(line.strip())
        if not m:
            if header is not None and rows:
                break
            continue
        cells = [c.strip() for c in m.group(1).split("|")]
        if header is None:
            header = cells
        elif set("".join(cells)) <= set("-: "):
            continue
        else:
            rows[cells[0]] = cells[1:]
    if header is None or not rows:
        raise RuntimeError(f"no table in the demo's output:\n{stdout[-2000:]}")
    return header, rows


def demo_env(env_over: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``env_over``, importing calib from this script's tree."""
    env = {**os.environ, **env_over}
    env.pop("CALIB_CACHE_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


# epoch 0 -> last epoch of the fine-tuning history (history.jsonl), in percentage points
GAINS = {
    "Δ U/Y (head)": "acc_absent",
    "Δ U/U (head)": "acc_absent_absent",
    "Δ NCM S": "ncm_acc_seen",
    "Δ NCM U": "ncm_acc_absent",
}


def history_gains(run_dir: Path) -> list[str]:
    """The :data:`GAINS` of a finished run, formatted like the demo's table (one decimal)."""
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-1]
    return [f"{100 * (float(last[k]) - float(first[k])):+.1f}" for k in GAINS.values()]


def run_demo(
    name: str, env_over: dict[str, str], out_root: Path, extra: list[str], keep: bool = False
) -> dict:
    """One demo run under ``env_over``, with a fresh run folder and cache (``keep``: a run
    folder that this script filled before is resumed, i.e. only re-printed); its table, its
    history's gains and its wall time."""
    run_dir, cache_dir = out_root / f"demo_{name}", out_root / f"cache_{name}"
    for d in (run_dir, cache_dir):
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    env = demo_env(env_over)
    cmd = [str(CALIB_RUN), f"run_dir={run_dir}", f"cache_dir={cache_dir}", "progress=false"]
    cmd += extra
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: calib-run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    header, rows = first_table(proc.stdout)
    rows["fine-tuning history, epoch 0 → last (pp)"] = history_gains(run_dir)
    return {"env": env_over, "wall_s": wall, "header": header, "rows": rows, "cmd": cmd}


def time_reruns(first: dict, fresh_dir: Path) -> dict[str, float]:
    """Wall time of the demo again (its cache now holds the source model): in the same run
    folder (what a second ``make demo`` does: the run resumes) and in a new folder (the source
    model is reused from the cache, the rest is recomputed)."""
    shutil.rmtree(fresh_dir, ignore_errors=True)
    same = first["cmd"]
    fresh = [same[0], f"run_dir={fresh_dir}", *same[2:]]
    out = {}
    for key, cmd in (("same_folder_s", same), ("new_folder_s", fresh)):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=demo_env(first["env"]), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"rerun failed ({proc.returncode}):\n{proc.stderr[-3000:]!r}")
        out[key] = time.perf_counter() - t0
    return out


def spread_table(results: dict[str, dict]) -> str:
    """Markdown: per row and column, min–max over the variants (one value where they agree)."""
    names = list(results)
    first = results[names[0]]
    rows = {}
    for row, cells in first["rows"].items():
        out = []
        for j in range(len(cells)):
            vals = [results[n]["rows"].get(row, [""] * len(cells))[j] for n in names]
            try:
                lo, hi = min(float(v) for v in vals), max(float(v) for v in vals)
            except ValueError:
                out.append("/".join(sorted(set(vals))))
                continue
            digits = len(vals[0].split(".")[1]) if "." in vals[0] else 0
            sign = "+" if vals[0].startswith(("+", "-")) else ""
            out.append(f"{lo:{sign}.{digits}f}" + (f" – {hi:{sign}.{digits}f}" if hi != lo else ""))
        rows[row] = out
    return markdown({"header": first["header"], "rows": rows})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-root", type=Path, default=Path("/tmp/demo_spread"))
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}"
    )
    parser.add_argument("--extra", nargs="*", default=[], help="overrides passed to calib-run")
    parser.add_argument("--json", type=Path, default=None, help="also write every table here")
    parser.add_argument(
        "--no-rerun", action="store_true", help="skip timing the cached rerun of the first variant"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="reuse the run folders of an earlier call (re-prints them; times mean nothing)",
    )
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        parser.error(f"--variants: unknown {unknown or names!r}; choose from {list(VARIANTS)}")
    if not CALIB_RUN.exists():
        parser.error(f"no calib-run next to {sys.executable}; run `make setup` first")
    args.out_root.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    rerun_s = None
    for name in names:
        print(f"[{name}] {VARIANTS[name] or 'no override'} ...", file=sys.stderr, flush=True)
        results[name] = run_demo(name, VARIANTS[name], args.out_root, args.extra, args.keep)
        print(f"[{name}] {results[name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if rerun_s is None and not (args.no_rerun or args.keep):
            rerun_s = time_reruns(results[name], args.out_root / f"demo_{name}_cached")

    import torch  # only for the version line

    print(
        f"CPU: {cpu_model()}; {dt.date.today().isoformat()}; torch {torch.__version__}, "
        f"native kernel {torch.backends.cpu.get_cpu_capability()}"
    )
    if rerun_s is not None:
        print(
            f"wall time of `{names[0]}`: first run (source model trained) "
            f"{results[names[0]]['wall_s']:.0f} s; again in the same run folder (resumes) "
            f"{rerun_s['same_folder_s']:.0f} s; in a new run folder (source model from the "
            f"cache) {rerun_s['new_folder_s']:.0f} s"
        )
    print()
    for name, res in results.items():
        env = " ".join(f"{k}={v}" for k, v in res["env"].items()) or "(no override)"
        print(f"### {name}: {env}\n")
        print(markdown(res))
        print()
    print(f"### spread over {len(results)} variants (min–max)\n")
    print(spread_table(results))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"cpu": cpu_model(), "rerun_s": rerun_s, "results": results}, indent=1)
        )
    return 0


def markdown(res: dict) -> str:
    """One variant's table, as the demo printed it, and its history's gains."""
    lines = [
        "| " + " | ".join(res["header"]) + " |",
        "|" + "|".join("---" for _ in res["header"]) + "|",
    ]
    gains = {k: v for k, v in res["rows"].items() if len(v) == len(GAINS)}
    lines += ["| " + " | ".join([k, *v]) + " |" for k, v in res["rows"].items() if k not in gains]
    lines += ["", "| history | " + " | ".join(GAINS) + " |", "|---" * (len(GAINS) + 1) + "|"]
    lines += ["| " + " | ".join([k, *v]) + " |" for k, v in gains.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
