"""The peer the benchmarks measure against: Jupyter Kernel Gateway 3, in a virtualenv of its own.

The gateway pins its own jupyter_server and tornado, which need not agree with ours, so the
benches never install it beside the project: :func:`python` makes (once) and returns a venv at
``$SINGLECELL_BENCH_CACHE/kernel-gateway`` (default ``~/.cache/singlecell-bench``) with the
gateway, ipykernel, numpy and matplotlib, from the package index pip is configured with.

:class:`Gateway` runs it in either of its modes, in folders of its own:

- ``kernels``: the Jupyter kernel API (REST and WebSocket), what ``loadtests/kernel_bench.py`` measures;
- ``notebook-http``: a notebook's annotated cells as HTTP endpoints, run by ``prespawn`` kernels
  started ahead and shared by every caller. Its ``POST /eval`` evaluates the posted ``code`` in
  the kernel and answers ``{"status": "ok", "result": {"text/plain": repr}}``, the shape of ours.
  The kernels first import numpy and matplotlib, as our template does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REQUIREMENTS = ["jupyter_kernel_gateway>=3,<4", "ipykernel", "numpy", "matplotlib"]

# run once by every kernel at start (notebook-http runs every cell that is not an endpoint)
SETUP_CELL = "import json\nimport numpy\nimport matplotlib\nmatplotlib.use('agg')"
EVAL_CELL = """# POST /eval
_request = json.loads(REQUEST)
try:
    _value = eval(compile(_request["body"]["code"], "<cell>", "eval"), {})
    print(json.dumps({"status": "ok", "result": {"text/plain": repr(_value)}}))
except Exception as _exc:
    print(json.dumps({"status": "error", "ename": type(_exc).__name__, "evalue": str(_exc)}))"""
RESPONSE_CELL = """# ResponseInfo POST /eval
print(json.dumps({"headers": {"Content-Type": "application/json"}, "status": 200}))"""


def cache() -> Path:
    return Path(os.environ.get("SINGLECELL_BENCH_CACHE", Path.home() / ".cache" / "singlecell-bench"))


def python() -> Path:
    """The peer venv's interpreter, made and filled on first use (a marker records what was
    installed, so an interrupted install is redone)."""
    venv = cache() / "kernel-gateway"
    marker = venv / "installed.json"
    interpreter = venv / "bin" / "python"
    if marker.exists() and json.loads(marker.read_text()) == REQUIREMENTS and interpreter.exists():
        return interpreter
    print(f"installing the peer into {venv} (once): {' '.join(REQUIREMENTS)}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(interpreter), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run([str(interpreter), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   check=True, stdout=subprocess.DEVNULL)
    marker.write_text(json.dumps(REQUIREMENTS))
    return interpreter


def version() -> str:
    out = subprocess.run([str(python()), "-c", "import kernel_gateway; print(kernel_gateway.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def notebook(path: Path) -> Path:
    """The notebook-http mode's notebook: the setup cell, then ``POST /eval`` and its response info."""
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
             for source in (SETUP_CELL, EVAL_CELL, RESPONSE_CELL)]
    path.write_text(json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": "python",
                                                                             "display_name": "Python 3"}},
                                "nbformat": 4, "nbformat_minor": 5}))
    return path


class Gateway:
    """``jupyter kernelgateway`` in ``mode``, in a session and folders of its own."""

    def __init__(self, folder: Path, port: int, mode: str = "kernels", prespawn: int = 2) -> None:
        folder.mkdir(parents=True)
        self.mode = mode
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(folder / "gateway.log", "wb")  # closed by stop()
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTER_DATA_DIR": str(folder / "data"),
               "JUPYTER_CONFIG_DIR": str(folder / "config"), "MPLBACKEND": "agg"}
        env.pop("PYTHONPATH", None)
        flags = ["--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}"]
        if mode == "notebook-http":
            flags += ["--KernelGatewayApp.api=kernel_gateway.notebook_http",
                      f"--KernelGatewayApp.seed_uri={notebook(folder / 'eval.ipynb')}",
                      f"--KernelGatewayApp.prespawn_count={prespawn}"]
        elif mode != "kernels":
            raise ValueError(f"no such Kernel Gateway mode: {mode}")
        self.proc = subprocess.Popen([str(python()), "-m", "kernel_gateway", *flags], cwd=folder, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_up(self, timeout: float = 90) -> None:
        probe = "/api/kernelspecs" if self.mode == "kernels" else "/_api/spec/swagger.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kernel Gateway exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + probe, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Kernel Gateway did not start; see {self.log.name}")

    def stop(self, below: list[int]) -> None:
        """SIGTERM, then SIGKILL to what is left of ``below`` (its kernels, found by the caller)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.log.close()
