"""Wall time and CPU time of a test-suite command (by default `make test`), machine-wide.

    python benchmarks/bench_test_suite.py [--cwd TREE] [-- COMMAND ...]

Runs COMMAND (default ``make test``) in TREE (default this checkout) and prints its wall time
and the machine's CPU seconds over the same interval, read from ``/proc/stat`` (Linux): user,
nice, system and interrupt time of every process, so the CPU time of the subprocesses, the
torchrun ranks and the forkserver children that the tests start is counted too (``time``
counts only waited-for children), plus the VM's steal time. Wall time on a shared VM drifts by
tens of percent within an hour: compare only commands run back to back. To time an older
tree, check it out beside this one, e.g.::

    git worktree add /tmp/old 5885500
    PYTHONPATH=/tmp/old python benchmarks/bench_test_suite.py --cwd /tmp/old -- \\
        .venv/bin/python -m pytest -q -p no:cacheprovider
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_times() -> tuple[float, float]:
    """``(busy, steal)`` CPU seconds of the whole machine since boot (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cwd", type=Path, default=ROOT, help="the tree to run in")
    parser.add_argument("command", nargs="*", help="the command (default: make test)")
    args = parser.parse_args(argv)
    command = args.command or ["make", "test"]
    busy0, steal0 = cpu_times()
    start = time.perf_counter()
    rc = subprocess.run(command, cwd=args.cwd).returncode
    wall = time.perf_counter() - start
    busy1, steal1 = cpu_times()
    print(
        f"{' '.join(command)} (in {args.cwd}): exit {rc}, wall {wall:.1f} s, machine CPU "
        f"{busy1 - busy0:.1f} s, steal {steal1 - steal0:.1f} s, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        file=sys.stderr,
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
