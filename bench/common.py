"""Helpers shared by the benchmarks in this folder: statistics, CPU readings
from ``/proc``, the environment record, child processes (ready-file children
and JSON-lines workers), py-spy attachment, load patterns, and the common
``main`` tail (hard limit, signal-safe cleanup, JSON results).

The benchmarks are run as scripts (``python bench/<name>.py``), so this module
is imported as ``common`` from the script's own folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BIN = Path(sys.executable).parent  # the venv's console scripts (tmax-node, tmax-host, py-spy)
READY_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- stats


def pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def summarize_ms(values_s: list[float]) -> dict[str, Any]:
    """Latency summary in milliseconds from a list of seconds."""
    v = sorted(x * 1000 for x in values_s)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50_ms": pct(v, 50),
        "p90_ms": pct(v, 90),
        "p99_ms": pct(v, 99),
        "max_ms": v[-1],
        "mean_ms": sum(v) / len(v),
    }


def median(values: list[float | None]) -> float | None:
    """Median of the values that are present (None when there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(x: float | None, y: float | None) -> float | None:
    """``x / y``, or None when either is missing or ``y`` is zero."""
    return x / y if x is not None and y else None


def fmt(x: float | None, nd: int = 2) -> str:
    """A table cell: ``-`` for missing, thousands separators from 1,000 up."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


# --------------------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int | None = None) -> float | None:
    """user+system CPU seconds of a process (all its threads); this process if None."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None  # not Linux, or gone
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine (all processes, all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) and thread count of a process."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def open_fds(pid: int | str = "self") -> int | None:
    """Open file descriptors of a process (None if it cannot be read)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class CpuMeter:
    """CPU time per operation for a set of processes over one phase, plus how
    busy the whole machine was (other tenants included) in cores."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.machine_start = machine_busy_seconds()

    def per_op_us(self, ops: int, wall_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        m0, m1 = self.machine_start, machine_busy_seconds()
        if m0 is not None and m1 is not None and wall_s > 0:
            out["machine_cores_busy"] = (m1 - m0) / wall_s
        for name, pid in self.pids.items():
            t0, t1 = self.start[name], cpu_seconds(pid)
            if t0 is None or t1 is None or ops <= 0:
                continue
            out[name] = {"cpu_us_per_op": (t1 - t0) / ops * 1e6, "cores_busy": (t1 - t0) / wall_s}
        return out


class CpuWindow:
    """CPU seconds spent since this was created: by named processes, by this
    process, and by the whole machine. The machine's busy time minus the other
    two is what other tenants used, which says how far wall-clock figures of
    the same window can be trusted.

    Unreadable figures (a process gone, no ``/proc``) count as 0.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        self.machine_start = machine_busy_seconds() or 0.0
        self.own_start = time.process_time()

    def spent(self) -> dict[str, float]:
        """CPU seconds per named process since the start."""
        return {name: (cpu_seconds(pid) or 0.0) - self.start[name] for name, pid in self.pids.items()}

    def own(self) -> float:
        """CPU seconds of this process since the start."""
        return time.process_time() - self.own_start

    def machine(self) -> float:
        """Busy CPU seconds of the whole machine since the start."""
        return (machine_busy_seconds() or 0.0) - self.machine_start


# --------------------------------------------------------------------------- environment


def environment() -> dict[str, Any]:
    """What the figures depend on: versions, CPUs, load at the start."""
    import grpc

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def node_env() -> dict[str, str]:
    """Lift the ratelimit plugin's limits (ignored if it is not installed): the
    bench measures the messaging pipeline, not the limiter's policy."""
    return {
        "TMAX_MESH_RATELIMIT_RATE": "1000000",
        "TMAX_MESH_RATELIMIT_BURST": "1000000",
        "TMAX_MESH_RATELIMIT_SOURCE_RATE": "1000000",
        "TMAX_MESH_RATELIMIT_SOURCE_BURST": "1000000",
        "TMAX_LOG_LEVEL": "warning",
    }


# --------------------------------------------------------------------------- node-level latency

TRACED = {"TMAX_LOG_LEVEL": "debug", "TMAX_LOG_FORMAT": "json"}
"""Environment for nodes whose per-message events (JSON, µs timestamps) are measured."""


def event_times(log_path: Path, event: str) -> dict[str, float]:
    """``{message_id: unix time}`` of a node's per-message debug events (JSON logs)."""
    times: dict[str, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError, KeyError):
            rec = json.loads(line)
            if rec.get("event") == event:
                ts = datetime.datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
                times.setdefault(rec["message_id"], ts.timestamp())
    return times


def node_to_node_ms(sender_log: Path, recipient_log: Path, message_ids: list[str]) -> dict[str, Any]:
    """A accepted the message (its outbox has it) → B committed it to its inbox,
    from the two nodes' log timestamps (one machine, one clock, µs resolution)."""
    accepted = event_times(sender_log, "accepted")
    stored = event_times(recipient_log, "stored")
    gaps = [stored[m] - accepted[m] for m in message_ids if m in accepted and m in stored]
    return summarize_ms(gaps)


# --------------------------------------------------------------------------- child processes


def log_tail(path: Path, n: int = 3000) -> str:
    """The last ``n`` characters of a child's log ("" if there is none yet)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except FileNotFoundError:
        return ""


class Child:
    """A child process that writes a JSON ready file; stopped in a new session.

    With ``prefix`` (e.g. ``py-spy record ... --``) the direct child is the
    wrapper: ``stop`` signals the real process (pid from the ready file) first
    so the wrapper can finish its output, then the whole group.
    """

    def __init__(self, name: str, argv: list[str], workdir: Path, prefix: list[str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.prefix = prefix or []
        self.ready_file = workdir / f"{name}.ready.json"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.ready: dict[str, Any] = {}

    def spawn(self, env: dict[str, str] | None = None) -> None:
        self.ready_file.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, *self.argv, "--ready-file", str(self.ready_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)
        self.ready = json.loads(self.ready_file.read_text())
        return self.ready

    def log_tail(self, n: int = 3000) -> str:
        return log_tail(self.log_path, n)

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        inner = self.ready.get("pid")
        if self.prefix and inner:
            with contextlib.suppress(ProcessLookupError):
                os.kill(inner, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)  # the wrapper writes its output and exits
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)


class Worker:
    """A child process driven by JSON lines on its stdin, answering on its stdout.

    It exits when its stdin closes, so it cannot outlive the bench for long
    even if the bench is killed; ``stop`` also signals its process group.
    """

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                limit=1 << 24,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        return log_tail(self.log_path, n)

    async def reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise RuntimeError(f"{self.name}: no answer in {timeout:g} s:\n{self.log_tail()}") from None
        if not line:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        return json.loads(line)

    async def request(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(cmd)
        return await self.reply(timeout)

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        for sig, wait in ((None, timeout), (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), wait)
            if proc.returncode is not None:
                return


async def serve_until_signalled(ready_file: str | Path, ready: dict[str, Any]) -> None:
    """Child-process side of ``Child``: publish ``ready`` in the ready file
    (atomically, so the parent never reads half a file), then wait for SIGTERM
    or SIGINT. Call once the child's listener is bound."""
    from tmax_core.readyfile import write_ready_file

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    write_ready_file(Path(ready_file), ready)
    await stop.wait()


# --------------------------------------------------------------------------- py-spy


def find_pyspy() -> str:
    """The ``py-spy`` next to this interpreter, else on PATH."""
    pyspy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if pyspy is None:
        raise RuntimeError("--profile needs py-spy: pip install py-spy")
    return pyspy


class PhaseProfiler:
    """``py-spy record --pid`` attached to running processes for one phase only:
    collapsed stacks in ``DIR/<name>.<phase>.collapsed.txt``."""

    def __init__(self, profile_dir: Path, phase: str, pids: dict[str, int], workdir: Path) -> None:
        self.pyspy = find_pyspy()
        self.phase = phase
        self.pids = pids
        self.outputs = {name: profile_dir / f"{name}.{phase}.collapsed.txt" for name in pids}
        self.log_path = workdir / f"py-spy-{phase}.log"
        self.procs: list[subprocess.Popen] = []

    async def start(self) -> None:
        with open(self.log_path, "ab") as log:
            for name, pid in self.pids.items():
                argv = [self.pyspy, "record", "--pid", str(pid), "--format", "raw", "--threads"]
                argv += ["--nonblocking", "--rate", "100", "--output", str(self.outputs[name])]
                self.procs.append(
                    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                )
        await asyncio.sleep(0.5)  # let py-spy attach before the phase starts
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"py-spy exited with {proc.returncode}: see {self.log_path}")

    async def stop(self) -> None:
        """SIGINT: py-spy writes its output and exits."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        while any(proc.poll() is None for proc in self.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.kill()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.procs.clear()


# --------------------------------------------------------------------------- load patterns


async def closed_loop(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Run ``op(i)`` for i in range(n) with ``concurrency`` workers; returns elapsed seconds."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def open_loop(rate: float, duration_s: float, op: Callable[[int], Awaitable[Any]]) -> int:
    """Start ``op(i)`` at ``t0 + i/rate`` regardless of earlier calls (no coordinated omission)."""
    n = int(rate * duration_s)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.01
    tasks = []
    for i in range(n):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(op(i)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return n


# --------------------------------------------------------------------------- main tail


def run_bounded(
    coro: Coroutine[Any, Any, dict[str, Any]],
    hard_limit_s: float,
    workdir: Path,
    kept: str,
    *,
    timeout_note_inline: bool = False,
) -> dict[str, Any] | int:
    """Run the bench's top coroutine under its hard limit; returns its results,
    or the exit code after saying why on stderr.

    SIGTERM is turned into KeyboardInterrupt so that, like Ctrl-C, it unwinds
    through the coroutine's ``finally`` blocks, which stop the children. An
    interrupted run removes ``workdir``; a failed one keeps it for inspection
    (``kept`` names what it holds, e.g. "state dirs and logs").
    """

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    note = f"({kept} kept in {workdir})"
    try:
        return asyncio.run(asyncio.wait_for(coro, hard_limit_s))
    except KeyboardInterrupt:
        print("interrupted; children stopped", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except TimeoutError:
        stopped = f"benchmark stopped: over its {hard_limit_s:g} s limit"
        print(f"{stopped} {note}" if timeout_note_inline else f"{stopped}\n{note}", file=sys.stderr)
        return 1
    except Exception as err:
        print(f"benchmark failed: {err}\n{note}", file=sys.stderr)
        return 1


def write_results(name: str, out: dict[str, Any]) -> dict[str, Any]:
    """Write ``out`` to ``bench/results/<name>.json``, with its own path (relative
    to the checkout) added as ``json_path``; returns ``out``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    out["json_path"] = str(json_path.relative_to(BENCH_DIR.parent))
    json_path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def run_and_report(
    name: str,
    head: dict[str, Any],
    run: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]],
    hard_limit_s: float,
    assess: Callable[[dict[str, Any]], Any],
    print_table: Callable[[dict[str, Any]], None],
    *,
    workdir_prefix: str,
    keep: bool,
) -> int:
    """The ``main`` tail of a bench whose temp dir holds only logs: ``run(workdir)``
    in a new temp dir under ``hard_limit_s`` (:func:`run_bounded`), then ``head``
    with the environment (read before the run), the results and
    ``assess(results)`` written to ``bench/results/<name>.json`` and printed
    with ``print_table``. The temp dir is removed unless ``keep``. Returns the
    exit code."""
    workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
    env_info = environment()
    results = run_bounded(run(workdir), hard_limit_s, workdir, "logs", timeout_note_inline=True)
    if isinstance(results, int):
        return results
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {**head, "environment": env_info, "results": results, "assessment": assess(results)}
    print_table(write_results(name, out))
    if keep:
        print(f"logs kept in {workdir}")
    return 0
