"""`calib-collate DIR`: the tables and figures of every run under DIR (a multirun folder, or several).

    calib-collate multirun/digits_demo               # grouped table + DIR/figures/sweep*.png
    calib-collate multirun/paper/office_home --paper  # paper-style: per setting, a block per method

Runs are grouped by the swept config keys (mean ± std over seeds per group); the work is in
:mod:`calib.run.collate`; this is its command line.
"""

from __future__ import annotations

import argparse
import sys

from calib.run.collate import collate_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="calib-collate", description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="folder holding run folders with results.json")
    parser.add_argument("--out", default=None, help="output prefix (default: DIR/collated)")
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric keys to show (default: ausuc and the headline accuracies)",
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="print the paper-style table (per setting: pre-trained, then per fine-tuning "
        "method: method, + γ ALG/PCV/oracle; then the average); also writes "
        "DIR/collated_paper.{md,csv}",
    )
    parser.add_argument(
        "--no-figures",
        action="store_true",
        help="skip the sweep figures (default: written to DIR/figures/, or next to --out)",
    )
    args = parser.parse_args(argv)
    try:
        if not args.no_figures:
            from calib.figures.files import figure_dpi

            figure_dpi()  # a bad CALIB_FIGURE_DPI is refused before any table is written
        text = collate_dir(
            args.dir,
            out=args.out,
            metrics=args.metrics.split(",") if args.metrics else None,
            paper=args.paper,
            figures=not args.no_figures,
        )
    except OSError as err:  # a missing DIR, --out below a file, a read-only folder, a full disk
        where = f"{err.strerror}: {err.filename}" if err.filename and err.strerror else str(err)
        sys.exit(f"calib-collate: {where}")
    except ValueError as err:
        sys.exit(f"calib-collate: {err}")
    print(text, end="" if text.endswith("\n") else "\n")


if __name__ == "__main__":
    main()
