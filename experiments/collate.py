"""`calib-collate DIR`: one table from every run under DIR (a multirun folder, or several).

    calib-collate multirun/digits_demo               # writes DIR/collated.csv and DIR/collated.md
    calib-collate multirun/paper/office_home --paper  # paper-style: one block per setting + average

The work is in :mod:`calib.collate`; this is its command line.
"""

from __future__ import annotations

import argparse
import sys

from calib.collate import collate_dir


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
        help="print the paper-style table (pre-trained, fine-tuned, + γ ALG/PCV/oracle per "
        "setting, then the average); also writes DIR/collated_paper.{md,csv}",
    )
    args = parser.parse_args(argv)
    try:
        text = collate_dir(
            args.dir,
            out=args.out,
            metrics=args.metrics.split(",") if args.metrics else None,
            paper=args.paper,
        )
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"calib-collate: {err}")
    print(text, end="" if text.endswith("\n") else "\n")


if __name__ == "__main__":
    main()
