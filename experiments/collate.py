"""`calib-collate DIR`: one table from every run under DIR (a multirun folder, or several).

    calib-collate multirun/digits_demo               # writes DIR/collated.csv and DIR/collated.md
    calib-collate multirun/office_home --group name  # paper-style: one block per setting + mean

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
    args = parser.parse_args(argv)
    try:
        text = collate_dir(
            args.dir, out=args.out, metrics=args.metrics.split(",") if args.metrics else None
        )
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"calib-collate: {err}")
    print(text)


if __name__ == "__main__":
    main()
