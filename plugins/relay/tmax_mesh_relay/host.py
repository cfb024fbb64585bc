"""``tmax-host``: the relay host server (placeholder until implemented)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("tmax-host: not implemented yet", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
