"""The ``singlecell-python`` Jupyter kernel (device/jupyter_kernel.py), installed as a real
kernelspec and started by jupyter_client as any Jupyter client would: ``jupyter_kernel_test``'s
conformance suite for every feature it implements, then what that suite does not cover — state
across cells, interrupts, aborting after an error, shutdown, and the sandbox layers."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jupyter_kernel_test
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

from device.sandbox.registry import build_layers, layer_settings
from singlecell import config as settings
from singlecell import kernelspec
from tests.servers import ROOT

KERNEL = kernelspec.KERNEL_NAME
TIMEOUT = 30


@pytest.fixture(scope="module")
def active_layers() -> set[str]:
    """The sandbox layers that work on this host (asked before any client thread starts: a
    layer's check forks a probe)."""
    layers = build_layers(layer_settings(settings.load(environ={})))
    return {status.name for status in (layer.check() for layer in layers) if status.active}


@pytest.fixture(scope="module", autouse=True)
def installed_kernelspec(tmp_path_factory: pytest.TempPathFactory, active_layers: set[str]) -> Iterator[Path]:
    """The kernelspec, installed into a prefix of the test's own, which Jupyter is pointed at;
    the kernels run with the default settings."""
    prefix = tmp_path_factory.mktemp("jupyter-prefix")
    where = Path(kernelspec.install(prefix=str(prefix)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        patch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path_factory.mktemp("jupyter-runtime")))
        for name in [n for n in os.environ if n.startswith(settings.ENV_PREFIX)]:
            patch.delenv(name)
        yield where


# -- jupyter_kernel_test's suite ------------------------------------------------------------

class TestJupyterKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('careful', file=sys.stderr)"
    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "import sys; sys.ver", "matches": {"version", "version_info"}},
        {"text": "[].ap", "matches": {"append"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f():\n    return 1\n", "  1"]
    incomplete_code_samples = ["def f():", "for i in range(3):", "print('''hello", "(1,"]
    invalid_code_samples = ["1)", "x = )", "@"]
    code_page_something = "print?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "6*7", "result": "42"},
        {"code": "'a' + 'b'", "result": "'ab'"},
        {"code": "from IPython.display import HTML\nHTML('<b>bold</b>')", "mime": "text/html"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display\ndisplay(HTML('<b>bold</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display\ndisplay(Math(r'\\frac{1}{2}'))", "mime": "text/latex"},
        {"code": "from IPython.display import JSON, display\ndisplay(JSON({'a': 1}))", "mime": "application/json"},
        {"code": "from IPython.display import SVG, display\n"
                 "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"/>'))",
         "mime": "image/svg+xml"},
        {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()", "mime": "image/png"},
    ]
    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6*7"
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output\nclear_output()"


# -- beyond the suite: one kernel for the tests that leave it usable -------------------------

Outputs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def jupyter(installed_kernelspec: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[KernelManager, BlockingKernelClient]]:
    """A kernel started, as a notebook's would be, in a folder of the client's (not the checkout)."""
    launch = tmp_path_factory.mktemp("notebooks")
    manager, client = start_new_kernel(kernel_name=KERNEL, startup_timeout=60, cwd=str(launch))
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel()


@pytest.fixture
def kc(jupyter: tuple[KernelManager, BlockingKernelClient]) -> BlockingKernelClient:
    return jupyter[1]


def run(kc: BlockingKernelClient, code: str, **options: Any) -> tuple[dict[str, Any], Outputs]:
    """Run one cell; its execute_reply content and the iopub messages it caused, in order."""
    outputs: Outputs = []
    reply = kc.execute_interactive(code, timeout=TIMEOUT, output_hook=outputs.append, **options)
    return reply["content"], outputs


def result_text(outputs: Outputs) -> str:
    results = [m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"]
    assert len(results) == 1, outputs
    text: str = results[0]
    return text


def wait_for(kc: BlockingKernelClient, msg_id: str, msg_type: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg: dict[str, Any] = kc.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == msg_type:
            return msg
    raise AssertionError(f"no {msg_type} for {msg_id}")


def shell_reply(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    """The reply to ``msg_id``, passing over replies to earlier requests (jupyter_client 8.10's
    start_new_kernel can leave one of its kernel_info replies behind)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        msg: dict[str, Any] = kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg
    raise AssertionError(f"no reply to {msg_id}")


def test_kernel_info_describes_python_and_the_sandbox(kc: BlockingKernelClient) -> None:
    info = shell_reply(kc, kc.kernel_info())["content"]
    assert info["status"] == "ok"
    assert info["protocol_version"] == "5.3"
    assert info["implementation"] == "singlecell"
    language = info["language_info"]
    assert language["name"] == "python"
    assert language["version"] == platform.python_version()
    assert (language["mimetype"], language["file_extension"], language["pygments_lexer"]) == (
        "text/x-python", ".py", "ipython3")
    assert language["codemirror_mode"] == {"name": "ipython", "version": 3}
    assert "resources:" in info["banner"]


def test_comm_info_lists_no_comms(kc: BlockingKernelClient) -> None:
    assert shell_reply(kc, kc.comm_info())["content"] == {"status": "ok", "comms": {}}


def test_cells_share_one_namespace_and_the_count_goes_up(kc: BlockingKernelClient) -> None:
    first, outputs = run(kc, "x = 41\nprint('set')")
    assert first["status"] == "ok"
    assert [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"] == ["set\n"]
    second, outputs = run(kc, "x + 1")
    assert second["execution_count"] == first["execution_count"] + 1
    assert result_text(outputs) == "42"
    inputs = [m["content"] for m in outputs if m["msg_type"] == "execute_input"]
    assert inputs == [{"code": "x + 1", "execution_count": second["execution_count"]}]


def test_user_expressions_are_evaluated_after_the_cell(kc: BlockingKernelClient) -> None:
    reply, _ = run(kc, "y = 21", user_expressions={"double": "y * 2", "broken": "1 / 0"})
    assert reply["user_expressions"]["double"]["data"]["text/plain"] == "42"
    assert reply["user_expressions"]["broken"]["status"] == "error"


def test_a_silent_cell_is_not_echoed_and_does_not_count(kc: BlockingKernelClient) -> None:
    before, _ = run(kc, "1")
    reply, outputs = run(kc, "z = 5\nz", silent=True)
    assert reply["status"] == "ok"
    assert [m["msg_type"] for m in outputs] == ["status", "status"]
    after, outputs = run(kc, "z")
    assert after["execution_count"] == before["execution_count"] + 1
    assert result_text(outputs) == "5"


def test_interrupt_ends_the_running_cell_and_the_kernel_goes_on(
        jupyter: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = jupyter
    msg_id = kc.execute("while True:\n    pass")
    wait_for(kc, msg_id, "execute_input")
    time.sleep(0.3)
    manager.interrupt_kernel()  # interrupt_mode "signal": SIGINT to the kernel's process group
    reply = shell_reply(kc, msg_id)
    assert (reply["content"]["status"], reply["content"]["ename"]) == ("error", "KeyboardInterrupt")
    assert wait_for(kc, msg_id, "error")["content"]["ename"] == "KeyboardInterrupt"
    again, outputs = run(kc, "1 + 1")
    assert again["status"] == "ok" and result_text(outputs) == "2"


def test_interrupt_request_on_control_ends_the_running_cell(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("import time\ntime.sleep(60)")
    wait_for(kc, msg_id, "execute_input")
    time.sleep(0.3)
    kc.control_channel.send(kc.session.msg("interrupt_request", {}))
    assert kc.get_control_msg(timeout=TIMEOUT)["content"]["status"] == "ok"
    reply = shell_reply(kc, msg_id)
    assert (reply["content"]["status"], reply["content"]["ename"]) == ("error", "KeyboardInterrupt")
    assert run(kc, "'alive'")[0]["status"] == "ok"


def test_an_interrupt_between_cells_changes_nothing(
        jupyter: tuple[KernelManager, BlockingKernelClient]) -> None:
    manager, kc = jupyter
    manager.interrupt_kernel()
    time.sleep(0.3)
    reply, outputs = run(kc, "'still here'")
    assert reply["status"] == "ok" and result_text(outputs) == "'still here'"


def test_a_cell_sent_once_the_error_reply_came_runs(kc: BlockingKernelClient) -> None:
    """Only the cells that were waiting when a cell failed are aborted: one sent the moment the
    failure's reply arrives runs (the kernel takes the waiting cells before it replies)."""
    # a thread of the cell's keeps the interpreter busy after the failure, as a loaded host
    # would: the kernel then answers slowly, while this client sends its next cell at once
    busy = ("import threading, time\n"
            "def spin():\n    end = time.monotonic() + 0.3\n    while time.monotonic() < end:\n        pass\n"
            "threading.Thread(target=spin, daemon=True).start()\n1 / 0")
    for n in range(10):
        failing = kc.execute(busy)
        assert shell_reply(kc, failing)["content"]["status"] == "error"
        reply, outputs = run(kc, f"{n} + 1")
        assert reply["status"] == "ok" and result_text(outputs) == str(n + 1), (n, reply)


def test_an_error_aborts_the_cells_queued_behind_it(kc: BlockingKernelClient) -> None:
    failing = kc.execute("import time\ntime.sleep(0.5)\n1 / 0")
    queued = kc.execute("never = 1")
    replies = {}
    for _ in range(2):
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]
    assert replies[failing]["ename"] == "ZeroDivisionError"
    assert replies[queued]["status"] == "aborted"
    assert result_text(run(kc, "'never' in dir()")[1]) == "False"
    kept = kc.execute("import time\ntime.sleep(0.5)\n1 / 0", stop_on_error=False)
    runs = kc.execute("ran = True")
    replies = {}
    for _ in range(2):
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        replies[reply["parent_header"]["msg_id"]] = reply["content"]
    assert (replies[kept]["status"], replies[runs]["status"]) == ("error", "ok")


def test_input_says_there_is_no_standard_input(kc: BlockingKernelClient) -> None:
    reply, _ = run(kc, "input('name? ')")
    assert reply["ename"] == "EOFError"
    assert "no standard input" in reply["evalue"]


def test_subprocess_output_arrives_as_stream_messages(kc: BlockingKernelClient) -> None:
    _, outputs = run(kc, "import subprocess\nsubprocess.run(['echo', 'from a child'])\nNone")
    assert "from a child\n" in "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")


# -- the sandbox: the layers the server's kernels get ---------------------------------------

def test_resource_limits_hold_in_the_kernel(kc: BlockingKernelClient) -> None:
    defaults = settings.load(environ={})
    code = ("import resource\n"
            "resource.getrlimit(resource.RLIMIT_CORE), resource.getrlimit(resource.RLIMIT_CPU)")
    _, outputs = run(kc, code)
    cpu = defaults.cpu_limit
    assert result_text(outputs) == f"((0, 0), ({cpu}, {cpu + 1}))"


def test_the_kernel_works_in_a_private_folder_of_its_own(kc: BlockingKernelClient) -> None:
    code = "import os, stat\nos.getcwd() == os.environ['HOME'], os.getcwd() != {!r}, os.access('.', os.W_OK)"
    _, outputs = run(kc, code.format(os.getcwd()))
    assert result_text(outputs) == "(True, True, True)"


def test_a_module_in_the_kernels_folder_imports(kc: BlockingKernelClient) -> None:
    """As in ipykernel, the working folder is first on sys.path."""
    run(kc, "with open('mine.py', 'w') as fh:\n    fh.write('VALUE = 5')")
    _, outputs = run(kc, "import os, sys, mine\nmine.VALUE, sys.path[0] == os.getcwd()")
    assert result_text(outputs) == "(5, True)"


def test_identity_layer_drops_root(kc: BlockingKernelClient, active_layers: set[str]) -> None:
    if "identity" not in active_layers or os.geteuid() != 0:
        pytest.skip("the identity layer gives kernels a uid of their own only when run as root")
    _, outputs = run(kc, "import os\nos.getuid() != 0 and os.geteuid() != 0")
    assert result_text(outputs) == "True"


def test_network_layer_cuts_the_kernel_off(kc: BlockingKernelClient, active_layers: set[str]) -> None:
    if "network" not in active_layers:
        pytest.skip("the network layer is not active on this host")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "    reached = 'connected'\nexcept OSError:\n    reached = 'refused'\nreached")
        _, outputs = run(kc, code)
    assert result_text(outputs) == "'refused'"


def test_filesystem_layer_hides_the_hosts_files(kc: BlockingKernelClient, active_layers: set[str],
                                                tmp_path: Path) -> None:
    if "filesystem" not in active_layers:
        pytest.skip("the filesystem layer is not active on this host")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for cells")
    _, outputs = run(kc, f"import os\nos.path.exists({str(secret)!r}), os.path.exists({str(ROOT)!r} + '/setup.py')")
    assert result_text(outputs) == "(False, False)"


def test_the_kernels_folder_has_a_disk_quota_as_root(kc: BlockingKernelClient) -> None:
    if os.geteuid() != 0:
        pytest.skip("the kernel's folder is a tmpfs of its own (the disk quota) only as root")
    quota = settings.load(environ={}).disk_limit
    code = ("import errno, os\nchunk = b'x' * (1 << 20)\nwritten = 0\ntry:\n"
            f"    for n in range({quota} // 50 + 1):\n        with open(f'big{{n}}', 'wb') as fh:\n"
            "            for _ in range(50):\n                fh.write(chunk)\n                written += 1\n"
            "except OSError as exc:\n    stopped = errno.errorcode[exc.errno]\n"
            "for name in os.listdir('.'):\n    os.remove(name)\nstopped, written <= " + str(quota))
    _, outputs = run(kc, code)
    assert result_text(outputs) == "('ENOSPC', True)"


def test_syscall_layer_refuses_new_namespaces(kc: BlockingKernelClient, active_layers: set[str]) -> None:
    if "syscalls" not in active_layers:
        pytest.skip("the system-call filter is not active on this host")
    code = "import ctypes\nctypes.CDLL(None, use_errno=True).unshare(0x00020000), ctypes.get_errno()"
    _, outputs = run(kc, code)
    assert result_text(outputs) == "(-1, 1)"  # EPERM


# -- shutdown: a kernel of its own ------------------------------------------------------------

@pytest.fixture
def own_kernel(installed_kernelspec: Path, tmp_path: Path) -> Iterator[
        Callable[[], tuple[KernelManager, BlockingKernelClient, Path]]]:
    """Start a kernel whose folders go under a folder of the test's own."""
    started: list[tuple[KernelManager, BlockingKernelClient]] = []

    def start() -> tuple[KernelManager, BlockingKernelClient, Path]:
        work = tmp_path / f"work{len(started)}"
        work.mkdir()
        manager = KernelManager(kernel_name=KERNEL)
        manager.start_kernel(env={**os.environ, "SINGLECELL_WORK_DIR": str(work)}, cwd=str(tmp_path))
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        started.append((manager, client))
        return manager, client, work

    yield start
    for manager, client in started:
        client.stop_channels()
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("restart", [False, True])
def test_shutdown_request_answers_then_the_kernel_exits_cleanly_and_its_folders_go(
        own_kernel: Callable[[], tuple[KernelManager, BlockingKernelClient, Path]], restart: bool) -> None:
    manager, kc, work = own_kernel()
    assert run(kc, "open('made-by-the-cell.txt', 'w').write('x')")[0]["status"] == "ok"
    assert len(list(work.iterdir())) == 1  # its folder, with the working folder inside
    assert manager.provisioner is not None
    process = manager.provisioner.process  # type: ignore[attr-defined]
    kc.shutdown(restart=restart)
    reply = kc.get_control_msg(timeout=TIMEOUT)
    assert reply["content"] == {"status": "ok", "restart": restart}
    assert process.wait(timeout=TIMEOUT) == 0
    assert _wait_until(lambda: not list(work.iterdir())), list(work.rglob("*"))


def test_sigterm_also_ends_the_kernel_cleanly(
        own_kernel: Callable[[], tuple[KernelManager, BlockingKernelClient, Path]]) -> None:
    manager, kc, work = own_kernel()
    assert manager.provisioner is not None
    process = manager.provisioner.process  # type: ignore[attr-defined]
    kc.execute("import time\ntime.sleep(60)")
    time.sleep(0.5)
    process.terminate()
    assert process.wait(timeout=TIMEOUT) == 0
    assert _wait_until(lambda: not list(work.iterdir()))


# -- the command --------------------------------------------------------------------------

def _singlecell(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singlecell", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=ROOT, timeout=60)


def test_singlecell_kernelspec_install_and_remove(tmp_path: Path) -> None:
    done = _singlecell("kernelspec", "install", "--prefix", str(tmp_path), "--name", "sc-test")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "share" / "jupyter" / "kernels" / "sc-test"
    assert str(folder) in done.stdout
    assert folder.stat().st_mode & 0o755 == 0o755  # every user's Jupyter can read it
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["argv"] == [sys.executable, "-m", "device.jupyter_kernel", "-f", "{connection_file}"]
    assert (spec["display_name"], spec["language"], spec["interrupt_mode"]) == (
        "Python 3 (singlecell sandbox)", "python", "signal")
    jupyter_path = {"JUPYTER_PATH": str(tmp_path / "share" / "jupyter")}
    done = _singlecell("kernelspec", "remove", "--name", "sc-test", env=jupyter_path)
    assert done.returncode == 0, done.stderr
    assert not folder.exists()
    done = _singlecell("kernelspec", "remove", "--name", "sc-test", env=jupyter_path)
    assert done.returncode == 1 and "no kernelspec named sc-test" in done.stderr



def test_jupyter_run_uses_the_kernelspec_like_any_client(installed_kernelspec: Path, tmp_path: Path) -> None:
    """`jupyter run` (jupyter_client's own client) starts the kernel by its kernelspec, passing
    the file after the connection file: the kernel ignores such extra arguments, as ipykernel does."""
    import subprocess
    import sys

    source = tmp_path / "cell.py"
    source.write_text("x = 6\nprint(x * 7)\n")
    runner = Path(sys.executable).with_name("jupyter-run")
    done = subprocess.run([str(runner), "--kernel", "singlecell-python", str(source)], capture_output=True,
                          text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "42"
