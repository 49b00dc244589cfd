"""Jupyter Server with ``--gateway-url`` pointing at our server: its own ``GatewayClient`` and
``GatewayWebSocketConnection`` start and drive our kernels, and a client speaks only Jupyter
Server's REST and WebSocket API, as JupyterLab does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jupyter import HttpError, KernelSocket, call, of_type, stdout
from tests.servers import Server, Servers, free_port, wait_until

TOKEN = "gateway-test-token"


class JupyterServer:
    """``jupyter server --gateway-url=…`` as a subprocess, in folders of its own."""

    def __init__(self, gateway: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "jupyter-server.log"
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / "config"), "JUPYTER_DATA_DIR": str(folder / "data"),
               "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTER_PLATFORM_DIRS": "1"}
        (folder / "notebooks").mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed by stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={self.port}",
             "--ip=127.0.0.1", f"--ServerApp.token={TOKEN}", f"--gateway-url={gateway}",
             f"--ServerApp.root_dir={folder / 'notebooks'}", "--GatewayClient.request_timeout=60"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            try:
                return bool(call("GET", self.url + "/api/status", token=TOKEN))
            except (HttpError, OSError):
                return False

        if not wait_until(up, 60, 0.2):
            self.stop()
            raise AssertionError(f"jupyter server did not start:\n{self.log_path.read_text()[-3000:]}")

    def api(self, method: str, path: str, body: object = None) -> object:
        return call(method, self.url + path, body, TOKEN)

    def socket(self, kernel_id: str) -> KernelSocket:
        return KernelSocket(f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels", token=TOKEN)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def ours(module_servers: Servers) -> Server:
    return module_servers("serve", name="gateway")


@pytest.fixture(scope="module")
def jupyter(ours: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = JupyterServer(ours.url, tmp_path_factory.mktemp("jupyter-server"))
    yield server
    server.stop()


def test_jupyter_server_runs_a_whole_notebook_session_on_our_kernels(jupyter: JupyterServer, ours: Server) -> None:
    specs = jupyter.api("GET", "/api/kernelspecs")
    assert isinstance(specs, dict) and "python3" in specs["kernelspecs"]
    assert "singlecell" in specs["kernelspecs"]["python3"]["spec"]["display_name"]
    model = jupyter.api("POST", "/api/kernels", {"name": "python3"})
    assert isinstance(model, dict)
    kernel_id = model["id"]
    ours_listed = call("GET", ours.url + "/api/kernels")
    assert kernel_id in [k["id"] for k in ours_listed]  # Jupyter Server's kernel is one of ours
    ws = jupyter.socket(kernel_id)

    # execute, keeping state
    assert stdout(ws.execute("x = 6\nprint('x is', x)")) == "x is 6\n"
    result = of_type(ws.execute("x * 7"), "execute_result")
    assert result[0]["content"]["data"]["text/plain"] == "42"

    # complete
    reply = ws.reply(ws.send("complete_request", {"code": "import collec", "cursor_pos": 13}))
    assert "collections" in reply["content"]["matches"]

    # input(), answered on stdin
    msg_id = ws.send("execute_request", {"code": "print('got', input('name: '))", "allow_stdin": True})
    asked = ws.until(lambda m: m["msg_type"] == "input_request")[-1]
    assert asked["channel"] == "stdin" and asked["content"]["prompt"] == "name: "
    ws.send("input_reply", {"value": "Grace"}, channel="stdin")
    assert stdout(ws.answers(msg_id)) == "got Grace\n"

    # a comm: a widget, and an update from the front end
    shown = ws.execute("import ipywidgets as w\ns = w.IntSlider()\n"
                       "s.observe(lambda c: print('moved to', c['new']), names='value')\ndisplay(s)")
    comm_id = next(m["content"]["comm_id"] for m in of_type(shown, "comm_open")
                   if m["content"]["data"]["state"].get("_model_name") == "IntSliderModel")
    update = ws.send("comm_msg", {"comm_id": comm_id, "data": {"method": "update", "state": {"value": 3},
                                                                "buffer_paths": []}})
    assert stdout(ws.answers(update)) == "moved to 3\n"

    # interrupt a while True, through Jupyter Server's REST API
    spin = ws.send("execute_request", {"code": "while True: pass"})
    ws.until(lambda m: m["msg_type"] == "execute_input" and m["parent_header"]["msg_id"] == spin)
    jupyter.api("POST", f"/api/kernels/{kernel_id}/interrupt")
    interrupted = ws.reply(spin)
    assert interrupted["content"]["ename"] == "KeyboardInterrupt"
    assert stdout(ws.execute("print(x)")) == "6\n"

    # restart: the same kernel id, a fresh namespace
    restarted = jupyter.api("POST", f"/api/kernels/{kernel_id}/restart")
    assert isinstance(restarted, dict) and restarted["id"] == kernel_id
    assert of_type(ws.execute("x"), "error")[0]["content"]["ename"] == "NameError"

    # shut down
    ws.close()
    jupyter.api("DELETE", f"/api/kernels/{kernel_id}")
    assert wait_until(lambda: kernel_id not in [k["id"] for k in call("GET", ours.url + "/api/kernels")], 10)
    with pytest.raises(HttpError) as gone:
        call("GET", f"{ours.url}/api/kernels/{kernel_id}")
    assert gone.value.status == 404
