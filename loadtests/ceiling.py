"""The bare fork ceiling of this machine: what one fresh process per request costs, and nothing else.

    python loadtests/ceiling.py                # prints its table: sequential p50, then req/s at 4 and 16 in flight

A template process imports IPython, numpy and matplotlib and builds one ``InteractiveShell``
(history off), as a warm kernel template would. For each request it forks a child, which runs
``1+1`` with that shell, opens a **new** ZeroMQ context, sends the result's repr over a PUSH
socket to the driver, and exits; the template reaps it. No sandbox, no Jupyter ``Session`` (no
signing, no message headers), no store, no web tier, and none of the project's own code
(``device.pool.KernelPool`` is not used): only fork, IPython and ZeroMQ. The fork is on the
critical path: a request is a byte the driver writes to the template's stdin.

``loadtests/bench.py`` runs it beside the server and the peer, in the same run, and reports its
results and its CPU per request (template, children, driver).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CODE = "1+1"
EXPECTED = b"2"
TICK = os.sysconf("SC_CLK_TCK")


# -- the template (its own process) ----------------------------------------------------------------

#: ``--preload ours``: what our template holds besides (pyplot with the inline backend, ipywidgets,
#: a plot drawn once), so the bench can tell the cost of that memory from the cost of our code
OUR_PRELOAD_CELL = "import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show(); plt.close('all')"


def serve(endpoint: str, preload: str = "bare") -> None:
    """The template: warm up, say "ready" on stdout, then fork a child per byte read from stdin."""
    os.environ.setdefault("MPLBACKEND", "agg")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    import matplotlib  # noqa: F401
    import numpy  # noqa: F401
    import zmq
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    if preload == "ours":
        import ipywidgets  # noqa: F401

        shell.enable_gui = lambda gui=None: None  # no GUI event loop: the base class only raises
        shell.enable_matplotlib("inline")
        shell.run_cell(OUR_PRELOAD_CELL, store_history=False)
    shell.run_cell(CODE, store_history=False)  # what IPython builds lazily is built before the forks
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.write(1, b"ready\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what the shell prints ("Out[1]: 2") goes nowhere, at a kernel's cost
    orders = sys.stdin.buffer.raw
    while True:
        got = orders.read(4096)  # type: ignore[union-attr]
        if not got:
            break
        for _ in got:
            pid = os.fork()
            if pid == 0:  # the child: one request, then exit
                try:
                    result = shell.run_cell(CODE, store_history=False).result
                    context = zmq.Context()
                    push = context.socket(zmq.PUSH)
                    push.connect(endpoint)
                    push.send(repr(result).encode())
                    push.close(linger=5000)  # term() waits until it is sent
                    context.term()
                finally:
                    os._exit(0)
        while True:  # reap what has exited, without waiting for the rest
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


# -- the driver -------------------------------------------------------------------------------------

@dataclass
class Run:
    """One measurement: ``requests`` answered in ``seconds`` with ``in_flight`` at a time."""
    in_flight: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    wrong: int
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per role, over the whole run

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def p(self, q: float) -> float:
        lat = sorted(self.latencies_ms)
        return lat[min(len(lat) - 1, int(q * len(lat)))]


def _cpu_ms(pid: int) -> tuple[float, float]:
    """(own CPU ms, reaped children's CPU ms) of a process, from /proc."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    f = raw[raw.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) * 1000 / TICK, (int(f[13]) + int(f[14])) * 1000 / TICK


def _own_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


class Ceiling:
    """The template as a subprocess, and a PULL socket of the driver's (this process)."""

    def __init__(self, preload: str = "bare") -> None:
        import zmq

        self.folder = tempfile.mkdtemp(prefix="bench-ceiling-")
        self.endpoint = f"ipc://{self.folder}/results"
        self.context = zmq.Context()
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind(self.endpoint)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", self.endpoint, "--preload", preload],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        for line in self.proc.stdout:  # the warm-up cell's "Out[1]: 2" comes first
            if line == b"ready\n":
                break
        else:
            raise RuntimeError("the ceiling's template did not start")
        self.orders = self.proc.stdin

    def run(self, in_flight: int, requests: int | None = None, seconds: float | None = None) -> Run:
        """``requests`` (or as many as fit in ``seconds``), keeping ``in_flight`` forked at once."""
        import zmq

        started: list[float] = []
        latencies: list[float] = []
        wrong = 0
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        cpu_before = (*_cpu_ms(self.proc.pid), _own_cpu_ms())
        begin = time.perf_counter()
        end = begin + seconds if seconds is not None else float("inf")
        total = requests if requests is not None else 1 << 62

        def order(n: int) -> None:
            now = time.perf_counter()
            started.extend([now] * n)
            self.orders.write(b"x" * n)
            self.orders.flush()

        sent = min(in_flight, total)
        order(sent)
        answered = 0
        # answers come back in any order: with n in flight, each latency is taken against the
        # oldest order still unanswered (exact with one in flight)
        while answered < sent:
            if not poller.poll(30_000):
                raise RuntimeError("the ceiling's children stopped answering")
            answer = self.pull.recv()
            latencies.append((time.perf_counter() - started[answered]) * 1000)
            wrong += answer != EXPECTED
            answered += 1
            if sent < total and time.perf_counter() < end:
                order(1)
                sent += 1
        seconds_taken = time.perf_counter() - begin
        time.sleep(0.2)  # the last children are reaped, so their CPU is the template's cutime
        own, reaped = _cpu_ms(self.proc.pid)
        cpu = {"template": own - cpu_before[0], "kernels": reaped - cpu_before[1],
               "driver": _own_cpu_ms() - cpu_before[2]}
        return Run(in_flight, answered, seconds_taken, latencies, wrong, cpu)

    def close(self) -> None:
        self.orders.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.pull.close(linger=0)
        self.context.term()
        for name in os.listdir(self.folder):
            os.unlink(os.path.join(self.folder, name))
        os.rmdir(self.folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--preload", choices=("bare", "ours"), default="bare",
                        help="bare: IPython, numpy, matplotlib (the ceiling); ours: also what our template "
                             "preloads (pyplot inline, ipywidgets, a plot drawn once)")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests (default 300)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per concurrent row (default 10)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.preload)
        return
    ceiling = Ceiling(args.preload)
    try:
        ceiling.run(4, requests=40)  # warm-up
        runs = [ceiling.run(1, requests=args.requests), ceiling.run(4, seconds=args.seconds),
                ceiling.run(16, seconds=args.seconds)]
    finally:
        ceiling.close()
    print("| in flight | requests | req/s | p50 ms | p90 ms | wrong | CPU ms/request: template | children | driver |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        cpu = {k: v / run.requests for k, v in run.cpu_ms.items()}
        p50 = statistics.median(run.latencies_ms)
        print(f"| {run.in_flight} | {run.requests} | {run.per_second:.0f} | {p50:.2f} | "
              f"{run.p(0.9):.2f} | {run.wrong} | {cpu['template']:.1f} | {cpu['kernels']:.1f} | {cpu['driver']:.1f} |")


if __name__ == "__main__":
    main()
