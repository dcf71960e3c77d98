"""`python -m lifelong.serve DIR ...`: the same as `lifelong serve DIR ...`."""

from __future__ import annotations

import argparse
import sys

from lifelong.serve import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="lifelong serve", description=__doc__)
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except ValueError as e:
        print(f"lifelong serve: error: {e}", file=sys.stderr)
        sys.exit(2)
