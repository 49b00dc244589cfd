"""The ``singlecell`` command: ``eval`` prints a cell's output as a terminal would; signals stop
``serve`` cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import ROOT, Server, describe, free_port, wait_until


def singlecell(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLECELL_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "singlecell", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=90)


# -- eval ----------------------------------------------------------------------------------

def test_eval_of_a_file_prints_output_and_result_and_exits_0(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "cell.py"
    source.write_text("import sys\nprint('hello')\nprint('careful', file=sys.stderr)\n6 * 7\n")
    done = singlecell("eval", str(source), "-s", server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n42\n"
    assert done.stderr == "careful\n"


def test_eval_of_stdin_prints_output_and_exits_0(server: Server) -> None:
    done = singlecell("eval", "-", "-s", server.url, stdin="for i in range(3):\n    print(i)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0\n1\n2\n"
    assert done.stderr == ""


def test_eval_of_a_failing_cell_prints_the_traceback_and_exits_1(server: Server) -> None:
    code = "print('before')\ndef f():\n    return 1 / 0\nf()\n"
    done = singlecell("eval", "-", "-s", server.url, stdin=code)
    assert done.returncode == 1
    assert done.stdout == "before\n"
    assert "ZeroDivisionError" in done.stderr and "division by zero" in done.stderr
    assert "return 1 / 0" in done.stderr
    assert "\x1b[" not in done.stderr  # not a terminal: no colours


def test_eval_names_rich_outputs_and_prints_file_urls(server: Server) -> None:
    code = textwrap.dedent("""
        from IPython.display import HTML, display
        display(HTML('<b>x</b>'))
        _ = open('made.txt', 'w').write('abc')
    """)
    done = singlecell("eval", "-", "-s", server.url, stdin=code)
    assert done.returncode == 0, done.stderr
    assert "[text/html]" in done.stdout
    file_lines = [line for line in done.stdout.splitlines() if line.startswith("[file] made.txt (3 bytes): ")]
    assert len(file_lines) == 1
    assert file_lines[0].split(": ", 1)[1].startswith(server.url + "/files/")


def test_eval_of_a_cell_the_kernel_dies_in_exits_1(server: Server) -> None:
    done = singlecell("eval", "-", "-s", server.url, stdin="import os\nos._exit(3)\n")
    assert done.returncode == 1
    assert "KernelDied" in done.stderr and "exited with code 3" in done.stderr


def test_eval_of_code_the_server_refuses_exits_2_with_its_reason(server: Server) -> None:
    done = singlecell("eval", "-", "-s", server.url, stdin="   \n")
    assert done.returncode == 2
    assert "refused" in done.stderr and "400" in done.stderr


def test_eval_against_no_server_exits_2_saying_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = singlecell("eval", "-", "-s", url, stdin="print(1)\n")
    assert done.returncode == 2
    assert "cannot reach" in done.stderr and url in done.stderr


# -- stopping serve ------------------------------------------------------------------------

@pytest.mark.parametrize(("sig", "whole_group"), [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm", "ctrl-c"])
def test_a_signal_stops_serve_cleanly(start_server: Callable[..., Server], sig: signal.Signals,
                                      whole_group: bool) -> None:
    server = start_server("serve")
    assert server.processes(), "serve shows no device or kernels to stop"
    server.stop(sig, whole_group=whole_group)  # asserts: exit 0 within 15 s, no process left
    assert not server.leftovers()


@pytest.mark.parametrize(("sig", "whole_group"), [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm", "ctrl-c"])
def test_a_signal_stops_serve_cleanly_while_a_cell_and_its_child_run(start_server: Callable[..., Server],
                                                                    sig: signal.Signals, whole_group: bool) -> None:
    server = start_server("serve", "--shutdown-grace", "1")
    client = server.client()
    code = ("import subprocess, time\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
            "print('started', flush=True)\ntime.sleep(100)")
    request_id = client.execute(code)
    assert wait_until(lambda: any(m["msg"]["msg_type"] == "stream"
                                  for m in client.output(request_id, wait=1)["messages"]), 15)
    client.close()
    assert any("sleep 1000" in describe(pid) for pid, _ in server.processes()), "the cell's child is not running"
    server.stop(sig, whole_group=whole_group)


@pytest.mark.parametrize("command", ["web", "device"])
def test_sigterm_stops_web_and_device_cleanly(start_server: Callable[..., Server], command: str) -> None:
    web = start_server("web")
    device = start_server("device", data_dir=web.data_dir)
    device.wait_serving(url=web.url)
    (web if command == "web" else device).stop()


# -- doctor and required sandbox layers -----------------------------------------------------

def test_doctor_prints_every_layer_with_its_state(active_layers: set[str]) -> None:
    done = singlecell("doctor")
    assert done.returncode == 0, done.stderr
    for name in ("identity", "resources", "network", "filesystem", "syscalls"):
        line = next((row for row in done.stdout.splitlines() if row.split()[:1] == [name]), None)
        assert line is not None, f"doctor does not mention {name}: {done.stdout}"
        assert line.split()[1] == ("on" if name in active_layers else "OFF"), line


@pytest.mark.postgres
def test_doctor_names_the_store_and_filestore_with_their_servers_versions_and_no_password(tmp_path: Path) -> None:
    import sqlite3

    from tests import postgres

    done = singlecell("doctor", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"store      SQLite {sqlite3.sqlite_version} at sqlite:///{tmp_path}/data/singlecell.db" in done.stdout
    assert "wake-ups   ZeroMQ between this host's processes\n" in done.stdout
    assert not (tmp_path / "data" / "singlecell.db").exists()  # doctor looks, and makes nothing
    with postgres.database() as url:
        secret = url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")  # trust auth ignores it
        done = singlecell("doctor", "--db", secret, "--files", f"dir:{tmp_path}/files")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "store      PostgreSQL 1" in done.stdout and "hunter2" not in done.stdout and "***" in done.stdout
    assert f"filestore  a folder, {tmp_path}/files" in done.stdout
    assert "wake-ups   LISTEN/NOTIFY through PostgreSQL: processes on any host" in done.stdout
    done = singlecell("doctor", "--db", "mongodb://someone:hunter2@127.0.0.1:9/cells")  # nothing listens on 9
    assert done.returncode == 1 and "store      UNREACHABLE (StoreUnavailable" in done.stdout
    assert "hunter2" not in done.stdout + done.stderr and "wake-ups" not in done.stdout


def test_doctor_fails_when_a_required_layer_is_off() -> None:
    done = singlecell("doctor", "--allow-network", "--sandbox-required", "network")
    assert done.returncode == 1
    assert "network" in done.stdout and "--allow-network" in done.stdout
    assert "required sandbox layer(s) not active" in done.stdout


@pytest.mark.parametrize("command", ["serve", "device"])
def test_a_server_refuses_to_start_without_a_required_layer(command: str, tmp_path: Path) -> None:
    args = [command, "--data-dir", str(tmp_path / "data"), "--sandbox", "identity,filesystem",
            "--sandbox-required", "network,syscalls"]
    if command == "serve":
        args += ["--port", str(free_port())]
    done = singlecell(*args)
    assert done.returncode == 78, (done.returncode, done.stderr[-2000:])
    assert "required sandbox layer(s) not active: network" in done.stderr
    assert "syscalls" in done.stderr
