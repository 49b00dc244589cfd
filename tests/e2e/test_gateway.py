"""Jupyter Server with ``--gateway-url`` pointing at our server: its own ``GatewayClient`` and
``GatewayWebSocketConnection`` start and drive our kernels, and a client speaks only Jupyter
Server's REST and WebSocket API, as JupyterLab does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.jupyter import HttpError, JupyterServer, call, of_type, stdout
from tests.servers import Server, Servers, wait_until


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
