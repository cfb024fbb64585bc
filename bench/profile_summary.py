"""Summarise ``py-spy record --format raw --threads`` output (collapsed stacks).

    .venv/bin/python bench/profile_summary.py PROFILE_DIR/node-a.collapsed.txt [--top 25]

Prints, per thread, the share of samples, then the top functions by *self*
samples (where the CPU actually was) and by *inclusive* samples (what the
time was spent under), both as a percentage of all the process's samples.
py-spy drops idle samples by default, so percentages are of busy time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Event-loop plumbing that sits under everything: hidden from the inclusive list.
_PLUMBING = (
    "asyncio/",
    "<module> (tmax-node",
    "main (tmax_core/daemon.py",
    "threading.py",
    "concurrent/futures/thread.py",
)


def frame_key(frame: str) -> str:
    """``func (file:line)`` -> ``func (file)`` so one function is one row."""
    m = _FRAME_RE.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: Path, top: int) -> str:
    stacks = load(path)
    total = sum(c for _, c in stacks) or 1
    threads: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, count in stacks:
        thread = frames[0].split(":", 1)[-1].strip() if frames[0].startswith("thread") else "?"
        thread = re.sub(r"_\d+$", "", thread)  # tmax-db_0 -> tmax-db
        threads[thread] += count
        body = frames[1:] if frames[0].startswith("thread") else frames
        if body:
            self_[frame_key(body[-1])] += count
        for key in {frame_key(f) for f in body}:
            if not key.startswith(_PLUMBING) and not any(p in key for p in _PLUMBING):
                incl[key] += count
    out = [f"{path}  ({total} busy samples)", "threads:"]
    out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()]
    out.append(f"top {top} self:")
    out += [f"  {n / total:6.1%}  {k}" for k, n in self_.most_common(top)]
    out.append(f"top {top} inclusive (event-loop plumbing hidden):")
    out += [f"  {n / total:6.1%}  {k}" for k, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    for i, path in enumerate(args.files):
        if i:
            print()
        print(summarise(path, args.top))


if __name__ == "__main__":
    main()
