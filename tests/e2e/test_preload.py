"""``--preload``: the operator's modules, or a folder of them, imported once into the kernel template,
so every kernel has them at no cost per cell; one that does not import stops the server at start
with an error naming it, never every cell after."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.servers import ROOT, Server, wait_until

SDK = 'import time\n__version__ = "1.2"\nLOADED_AT = time.time()\n\ndef hello():\n    return "hello from the sdk"\n'


def sdk_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sdk"
    (folder / "toolkit").mkdir(parents=True)
    (folder / "mysdk.py").write_text(SDK)
    (folder / "toolkit" / "__init__.py").write_text("ANSWER = 42\n")
    return folder


def test_a_folder_of_modules_is_in_every_kernel_already(start_server: Callable[..., Server], tmp_path: Path) -> None:
    folder = sdk_folder(tmp_path)
    server = start_server("serve", "--preload", f"numpy,{folder}")
    with server.client() as client:
        code = ("import sys\nprint('mysdk' in sys.modules, 'toolkit' in sys.modules)\n"
                "import mysdk, toolkit\nprint(mysdk.hello(), toolkit.ANSWER)\nmysdk.LOADED_AT")
        first, second = client.eval(code), client.eval(code)
    assert first["stdout"] == second["stdout"] == "True True\nhello from the sdk 42\n", first
    # imported once, in the template, before either cell: both kernels hold the same module
    assert first["result"]["text/plain"] == second["result"]["text/plain"]


def test_a_module_that_does_not_import_stops_the_server_at_start_saying_which(
        start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--preload", "numpy,no_such_sdk_module", ready=False)
    assert wait_until(lambda: not server.running, 90), "the server kept running with a preload that fails"
    assert server.proc is not None and server.proc.returncode == 78
    log = server.log_text()
    assert "importing 'no_such_sdk_module' in the kernel template failed: ModuleNotFoundError" in log
    assert "the device cannot run with these settings" in log


def test_doctor_lists_what_is_preloaded_and_what_does_not_import(tmp_path: Path) -> None:
    folder = sdk_folder(tmp_path)
    done = subprocess.run([sys.executable, "-m", "singlecell", "doctor", "--preload", f"numpy,{folder},nope_nothing"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert any(line.split()[:2] == ["mysdk", "ok"] and line.endswith("1.2") for line in lines), done.stdout
    assert any(line.split()[:2] == ["toolkit", "ok"] for line in lines)
    assert any(line.split()[:2] == ["numpy", "ok"] for line in lines)
    assert any(line.split()[:2] == ["nope_nothing", "FAILED"] and "ModuleNotFoundError" in line for line in lines)
    assert "the server would refuse to start" in done.stdout
