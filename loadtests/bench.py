"""Benchmark: ``POST /eval`` of ``1+1`` against the bare fork ceiling and the peer, in one run.

    python loadtests/bench.py                      # every target, 10 s per row
    python loadtests/bench.py --seconds 5 --targets ceiling,sqlite
    python loadtests/bench.py --ab HEAD~3          # A/B: that commit's server and this one, interleaved

Targets, each measured in this run on this machine (only ratios within one run mean anything):

- **ceiling**: the bare fork ceiling of ``loadtests/ceiling.py``: a warm IPython + numpy +
  matplotlib template forks a child per request that runs ``1+1`` and answers over a new ZeroMQ
  context. No sandbox, no Jupyter ``Session``, none of the project's code.
- **ceiling-preload**: the same, its template also holding what ours preloads (pyplot with the
  inline backend, ipywidgets, a plot drawn once): how much of the gap is that memory, copied by
  every fork and dropped by every exit.
- **peer**: Jupyter Kernel Gateway 3 in ``notebook-http`` mode, two kernels spawned ahead and
  shared by every caller (no isolation), installed into a venv of its own (``loadtests/peer.py``).
- **sqlite**, **postgresql**: ``singlecell serve`` with every sandbox layer this host allows, on
  SQLite and on a new PostgreSQL database (``--postgres``).
- **sandbox-off**: ``singlecell serve --sandbox none`` on SQLite: what the layers cost.

Each HTTP target is driven by ``wrk`` with ``loadtests/eval.lua``, which checks every answer's body
(``"status": "ok"`` and ``"text/plain": "2"``): a row at concurrency 1 and one at 16, ``--seconds``
each, after a warm-up. The ceiling runs ``--ceiling-requests`` one at a time, then 4 and 16 in flight.

For every row it prints the CPU ms per request of each process role, from ``/proc``: the web
process (the gateway's for the peer), the device, the kernel template, the kernels (living, and
reaped ones through their parent's ``cutime``), PostgreSQL (every ``postgres`` process), the load
generator, and the whole machine (``/proc/stat``, which also counts kernel threads no process is
charged for, such as network namespace teardown). Then it checks the issue's goals as ratios,
writes every figure to ``loadtests/results/bench-<time>.json``, and compares the run with the
previous file there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests import peer  # noqa: E402
from loadtests.ceiling import Ceiling  # noqa: E402
from loadtests.harness import free_port  # noqa: E402
from loadtests.interact_bench import (  # noqa: E402
    Server,
    below,
    machine,
    machine_busy_ms,
    postgres_database,
    stat,
)
from loadtests.library_bench import total_cpu_ms  # noqa: E402

LUA = ROOT / "loadtests" / "eval.lua"
TARGETS = ("ceiling", "ceiling-preload", "peer", "sqlite", "postgresql", "sandbox-off")
ROLES = ("web", "device", "template", "kernels", "database", "load")
CPUS = len(os.sched_getaffinity(0))


@dataclass
class Measured:
    """One row: a target at one concurrency."""
    target: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failed: int  # errors, and answers that were not ``2``
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per role, over the row
    machine_ms: float = 0.0  # every CPU's busy time over the row

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def per_request(self, role: str) -> float | None:
        return self.cpu_ms[role] / self.requests if role in self.cpu_ms and self.requests else None

    def roles_total(self) -> float:
        return sum(self.cpu_ms.values()) / self.requests if self.requests else 0.0


# -- CPU of process roles ---------------------------------------------------------------------------

def postgres_pids() -> list[int]:
    """Every PostgreSQL server process: the backends and the WAL writer, checkpointer and the rest,
    whose work a commit causes too."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() in ("postgres", "postmaster"):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def delta(after: dict[int, float], before: dict[int, float]) -> float:
    """CPU ms of the processes in ``after`` since ``before`` (a process new since then counts whole)."""
    return sum(ms - before.get(pid, 0.0) for pid, ms in after.items())


# -- wrk --------------------------------------------------------------------------------------------

def wrk(url: str, concurrency: int, seconds: float) -> tuple[dict[str, Any], float]:
    """``wrk`` with the checking script: its JSON line, and its own CPU ms."""
    threads = min(concurrency, CPUS)
    proc = subprocess.Popen(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
                             "--timeout", "30s", "-s", str(LUA), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((line for line in output.splitlines() if line.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output}")
    return json.loads(line[len("WRK_JSON "):]), (usage.ru_utime + usage.ru_stime) * 1000


def http_row(target: str, url: str, concurrency: int, seconds: float,
             sample: Callable[[], dict[str, Any]]) -> Measured:
    before, machine_before = sample(), machine_busy_ms()
    result, load_ms = wrk(url, concurrency, seconds)
    machine_after, after = machine_busy_ms(), sample()
    cpu = {}
    for role in ("web", "device", "template", "database"):
        now, then = after.get(role), before.get(role)
        if now is not None:  # a role of many processes, some of them new or gone, by pid
            cpu[role] = delta(now, then) if isinstance(now, dict) else now - then
    if "kernels" in after:
        cpu["kernels"] = after["kernels"](before)  # a callable: kernels that came and went
    cpu["load"] = load_ms
    failed = (result["wrong"] + result["connect_errors"] + result["read_errors"] + result["write_errors"]
              + result["timeouts"])
    return Measured(target, concurrency, result["requests"], result["duration_us"] / 1e6, result["p50_us"] / 1000,
                    result["p90_us"] / 1000, result["p99_us"] / 1000, failed, cpu, machine_after - machine_before)


# -- targets ----------------------------------------------------------------------------------------

def ceiling_rows(args: argparse.Namespace, preload: str = "bare") -> list[Measured]:
    ceiling = Ceiling(preload)
    target = "ceiling" if preload == "bare" else "ceiling-preload"
    rows = []
    try:
        ceiling.run(4, requests=40)  # warm-up
        for in_flight in (1, 4, 16):
            machine_before = machine_busy_ms()
            run = (ceiling.run(1, requests=args.ceiling_requests) if in_flight == 1
                   else ceiling.run(in_flight, seconds=args.seconds))
            machine_ms = machine_busy_ms() - machine_before
            rows.append(Measured(target, in_flight, run.requests, run.seconds, run.p(0.5), run.p(0.9), run.p(0.99),
                                 run.wrong, {"template": run.cpu_ms["template"], "kernels": run.cpu_ms["kernels"],
                                             "load": run.cpu_ms["driver"]}, machine_ms))
    finally:
        ceiling.close()
    return rows


def peer_rows(args: argparse.Namespace, folder: Path) -> list[Measured]:
    gateway = peer.Gateway(folder / "peer", free_port(), "notebook-http", prespawn=2)
    try:
        gateway.wait_up()

        def sample() -> dict[str, Any]:
            own = stat(gateway.proc.pid)
            kernels = total_cpu_ms(below(gateway.proc.pid))
            reaped = own[4] if own else 0.0
            return {"web": own[3] if own else 0.0,
                    "kernels": lambda before: delta(kernels, before["_k"]) + reaped - before["_r"],
                    "_k": kernels, "_r": reaped}

        wrk(gateway.url, 4, 2)  # warm-up
        return [http_row("peer", gateway.url, c, args.seconds, sample) for c in args.concurrencies]
    finally:
        gateway.stop(below(gateway.proc.pid))


def ours_rows(target: str, args: argparse.Namespace, folder: Path, root: Path = ROOT,
              label: str | None = None) -> list[Measured]:
    flags = ["--kernels", str(args.kernels)] + (["--sandbox", "none"] if target == "sandbox-off" else [])
    with (postgres_database(args.postgres) if target == "postgresql" else nullcontext()) as pg:
        if target == "postgresql" and pg is None:
            return []
        db = args.postgres.rsplit("/", 1)[0] + "/" + pg if pg else None
        server = Server(folder / f"{label or target}-{os.urandom(3).hex()}", db, flags, root=root)
        try:
            server.wait_up()

            def sample() -> dict[str, Any]:
                s = server.sample()
                return {"web": s.web, "device": s.device, "template": s.template,
                        "database": total_cpu_ms(postgres_pids()) if pg else None,
                        "kernels": lambda before: s.minus(before["_s"])["kernels"], "_s": s}

            wrk(server.url, 4, 2)  # warm-up
            return [http_row(label or target, server.url, c, args.seconds, sample) for c in args.concurrencies]
        finally:
            left = server.stop()
            if left:
                print(f"{target}: left running after its stop: {left}", file=sys.stderr)


# -- the report ---------------------------------------------------------------------------------------

def f1(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def table(rows: list[Measured]) -> None:
    head = ["target", "c", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "failed",
            *(f"{r} ms/req" for r in ROLES), "roles total", "machine ms/req"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = [r.target, str(r.concurrency), str(r.requests), f"{r.per_second:.1f}", f"{r.p50_ms:.2f}",
                 f"{r.p90_ms:.2f}", f"{r.p99_ms:.2f}", str(r.failed), *(f1(r.per_request(role)) for role in ROLES),
                 f"{r.roles_total():.1f}", f"{r.machine_ms / r.requests:.1f}" if r.requests else "–"]
        print("| " + " | ".join(cells) + " |")


def goals(rows: list[Measured]) -> list[dict[str, Any]]:
    """The issue's goals, each as a ratio of two rows of this run."""
    by = {(r.target, r.concurrency): r for r in rows}
    out: list[dict[str, Any]] = []

    def goal(name: str, value: float | None, want: str, ok: bool | None, how: str) -> None:
        out.append({"goal": name, "value": value, "want": want, "met": ok, "how": how})

    ours16, ours1 = by.get(("sqlite", 16)), by.get(("sqlite", 1))
    peer16 = by.get(("peer", 16))
    ceilings = [r for r in rows if r.target == "ceiling" and r.concurrency > 1]
    ceiling1 = by.get(("ceiling", 1))
    if ours16 and peer16:
        ratio = ours16.per_second / peer16.per_second
        goal("1. /eval c16 ÷ peer c16", ratio, "≥ 1.4", ratio >= 1.4,
             f"{ours16.per_second:.1f} ÷ {peer16.per_second:.1f} req/s")
    if ours16 and ceilings:
        best = max(ceilings, key=lambda r: r.per_second)
        ratio = ours16.per_second / best.per_second
        goal("2. /eval c16 ÷ best ceiling", ratio, "≥ 0.70", ratio >= 0.70,
             f"{ours16.per_second:.1f} ÷ {best.per_second:.1f} req/s (ceiling with {best.concurrency} in flight)")
    if ours1 and ceiling1:
        ratio = ours1.p50_ms / ceiling1.p50_ms
        goal("3. /eval c1 p50 ÷ ceiling sequential p50", ratio, "≤ 1.5", ratio <= 1.5,
             f"{ours1.p50_ms:.2f} ÷ {ceiling1.p50_ms:.2f} ms")
    pg1 = by.get(("postgresql", 1))
    if ours1 and pg1:
        added = pg1.p50_ms - ours1.p50_ms
        goal("4. PostgreSQL's p50 − SQLite's, c1", added, "≤ 2 ms", added <= 2.0,
             f"{pg1.p50_ms:.2f} − {ours1.p50_ms:.2f} ms")
    failed = sum(r.failed for r in rows)
    goal("5. every answer checked: failed or wrong", failed, "0", failed == 0,
         f"{sum(r.requests for r in rows)} requests, each body checked")
    if ours16 and peer16:
        # goal 1 on these CPUs, as a CPU budget: 1.4 times the peer's req/s leaves this much per request
        budget = CPUS * 1000 / (1.4 * peer16.per_second)
        used = ours16.machine_ms / ours16.requests
        goal("CPU per /eval at c16, machine-wide", used, f"≤ {budget:.1f} ms (CPUs ÷ 1.4× the peer's req/s)",
             used <= budget, f"every role: {ours16.roles_total():.1f} ms; the peer's: "
                             f"{peer16.machine_ms / peer16.requests:.1f} ms")
    return out


def compare(rows: list[Measured], previous: Path) -> None:
    """Each row's req/s and p50 beside the same row of the run before (same machine, if it is)."""
    old = {(r["target"], r["concurrency"]): r for r in json.loads(previous.read_text())["rows"]}
    print(f"\nAgainst the previous run ({previous.name}):\n")
    print("| target | c | req/s then | req/s now | ratio | p50 then | p50 now | CPU ms/req then | now |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o = old.get((r.target, r.concurrency))
        if o is None:
            continue
        then_rps = o["requests"] / o["seconds"]
        then_cpu = sum(o["cpu_ms"].values()) / o["requests"]
        print(f"| {r.target} | {r.concurrency} | {then_rps:.1f} | {r.per_second:.1f} | {r.per_second / then_rps:.2f} | "
              f"{o['p50_ms']:.2f} | {r.p50_ms:.2f} | {then_cpu:.1f} | {r.roles_total():.1f} |")


def worktree(ref: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"singlecell-ab-{sha[:12]}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"some of {', '.join(TARGETS)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of wrk per row (default 10)")
    parser.add_argument("--concurrency", dest="concurrencies", default="1,16",
                        type=lambda text: [int(c) for c in text.split(",")],
                        help="the HTTP rows' concurrencies (default 1,16)")
    parser.add_argument("--ceiling-requests", type=int, default=300, help="the ceiling's sequential row")
    parser.add_argument("--kernels", type=int, default=8, help="--kernels of our servers (default 8)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="where to make the PostgreSQL target's database")
    parser.add_argument("--ab", metavar="REF", help="also run REF's server (a git worktree), interleaved: "
                        "base, head, base, head, on SQLite and PostgreSQL if targeted")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds (default 2)")
    parser.add_argument("--results", default=str(ROOT / "loadtests" / "results"), help="the JSON's folder")
    args = parser.parse_args()
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"no such target: {', '.join(sorted(unknown))} (choose from {', '.join(TARGETS)})")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    folder = Path(tempfile.mkdtemp(prefix="bench-"))
    rows: list[Measured] = []
    info = machine()
    try:
        if "ceiling" in targets:
            rows += ceiling_rows(args)
        if "ceiling-preload" in targets:
            rows += ceiling_rows(args, "ours")
        if "peer" in targets:
            info["peer"] = f"jupyter_kernel_gateway {peer.version()}"
            rows += peer_rows(args, folder)
        if args.ab:
            base = worktree(args.ab)
            info["ab_base"] = subprocess.run(["git", "rev-parse", args.ab], cwd=ROOT, capture_output=True,
                                             text=True).stdout.strip()
            compared = [t for t in ("sqlite", "postgresql") if t in targets] or ["sqlite"]
            for _ in range(args.rounds):
                for target in compared:
                    rows += ours_rows(target, args, folder, base, label=f"{target}@base")
                    rows += ours_rows(target, args, folder, ROOT)
        for target in ("sqlite", "postgresql", "sandbox-off"):
            if target in targets and not (args.ab and target in ("sqlite", "postgresql")):
                rows += ours_rows(target, args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\n/eval of 1+1; {CPUS} CPUs; {info['git_head'][:10]} {'(dirty)' if info['git_dirty'] else ''}; "
          f"{info['date']}\n")
    table(rows)
    checked = goals(rows)
    print("\n| goal | measured | wanted | met | from |\n|---|---|---|---|---|")
    for g in checked:
        value = g["value"] if isinstance(g["value"], int) else f"{g['value']:.2f}"
        print(f"| {g['goal']} | {value} | {g['want']} | {'yes' if g['met'] else 'NO'} | {g['how']} |")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    previous = sorted(results.glob("bench-*.json"))
    out = results / f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args), "rows": [asdict(r) for r in rows],
                               "goals": checked}, indent=1))
    if previous:
        compare(rows, previous[-1])
    print(f"\nfigures kept in {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()
