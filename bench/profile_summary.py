"""Summarise ``py-spy record --format raw --threads`` output (collapsed stacks).

    .venv/bin/python bench/profile_summary.py PROFILE_DIR/node-a.collapsed.txt [--top 25]
    .venv/bin/python bench/profile_summary.py FILE --thread MainThread --focus "seal (tmax_core/envelope.py)"

Prints, per thread, the share of samples, then the top functions by *self*
samples (where the CPU actually was) and by *inclusive* samples (what the
time was spent under), both as a percentage of all the process's samples.
py-spy drops idle samples by default, so percentages are of busy time.
``--thread`` keeps one thread's samples (percentages stay of the whole
process); ``--focus FUNC`` (a ``func (file)`` row as printed) adds what FUNC
spends its time in: its direct callees' inclusive samples, and its own.
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


def thread_of(frames: list[str]) -> str:
    thread = frames[0].split(":", 1)[-1].strip() if frames[0].startswith("thread") else "?"
    return re.sub(r"_\d+$", "", thread)  # tmax-db_0 -> tmax-db


def focus_rows(stacks: list[tuple[list[str], int]], func: str) -> Counter[str]:
    """Samples under ``func``, by direct callee (``<self>`` for its own)."""
    rows: Counter[str] = Counter()
    for frames, count in stacks:
        keys = [frame_key(f) for f in frames]
        if func not in keys:
            continue
        i = keys.index(func)  # outermost occurrence: recursion counted once
        rows[keys[i + 1] if i + 1 < len(keys) else "<self>"] += count
    return rows


def summarise(path: Path, top: int, thread_filter: str | None = None, focus: str | None = None) -> str:
    all_stacks = load(path)
    total = sum(c for _, c in all_stacks) or 1
    stacks = [s for s in all_stacks if thread_filter is None or thread_of(s[0]) == thread_filter]
    threads: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, count in stacks:
        threads[thread_of(frames)] += count
        body = frames[1:] if frames[0].startswith("thread") else frames
        if body:
            self_[frame_key(body[-1])] += count
        for key in {frame_key(f) for f in body}:
            if not key.startswith(_PLUMBING) and not any(p in key for p in _PLUMBING):
                incl[key] += count
    title = f"{path}  ({total} busy samples)" + (f", thread {thread_filter} only" if thread_filter else "")
    out = [title, "threads:"]
    out += [f"  {n / total:6.1%}  {t}" for t, n in threads.most_common()]
    out.append(f"top {top} self:")
    out += [f"  {n / total:6.1%}  {k}" for k, n in self_.most_common(top)]
    out.append(f"top {top} inclusive (event-loop plumbing hidden):")
    out += [f"  {n / total:6.1%}  {k}" for k, n in incl.most_common(top)]
    if focus:
        rows = focus_rows(stacks, focus)
        out.append(f"under {focus} ({sum(rows.values()) / total:.1%}), by direct callee:")
        out += [f"  {n / total:6.1%}  {k}" for k, n in rows.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--thread", help="one thread's samples only (e.g. MainThread, tmax-db)")
    ap.add_argument("--focus", metavar="FUNC", help='e.g. "seal (tmax_core/envelope.py)": its callees')
    args = ap.parse_args()
    for i, path in enumerate(args.files):
        if i:
            print()
        print(summarise(path, args.top, args.thread, args.focus))


if __name__ == "__main__":
    main()
