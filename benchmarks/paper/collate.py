"""Print (and write) the paper-style table of a benchmark's runs.

    python benchmarks/paper/collate.py multirun/paper/office_home

Writes ``DIR/collated{.md,.csv,_wide.csv}`` (the long table of ``calib-collate``) and
``DIR/collated_paper{.md,.csv}``: one block per setting with the rows pre-trained,
fine-tuned, fine-tuned + γ (ALG, PCV, oracle) and the columns Acc S/Y, U/Y, Y/Y, hmean,
AUSUC and NCM Y/Y, then their average over the settings.
"""

from __future__ import annotations

import argparse
import sys

from calib.collate import collate_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="a benchmark's multirun folder (runs with results.json)")
    parser.add_argument("--out", default=None, help="output prefix (default: DIR/collated)")
    args = parser.parse_args(argv)
    try:
        print(collate_dir(args.dir, out=args.out, paper=True), end="")
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"collate: {err}")


if __name__ == "__main__":
    main()
