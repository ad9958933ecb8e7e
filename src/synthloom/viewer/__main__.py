"""`python -m synthloom.viewer --run-dir RUN [--port N] [--compare RUN2] [--reviewer NAME]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from synthloom.errors import SynthloomError
from synthloom.viewer.app import serve_viewer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthloom.viewer", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--reviewer", default="reviewer")
    args = parser.parse_args(argv)
    try:
        serve_viewer(args.run_dir, host=args.host, port=args.port, compare=args.compare, reviewer=args.reviewer)
    except SynthloomError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
