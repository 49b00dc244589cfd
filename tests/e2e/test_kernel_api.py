"""The Jupyter kernel API (Kernel Gateway compatible) against a real server: REST, the
WebSocket's channels and wire formats, every message type a notebook uses, stdin, interrupts,
restarts and shutdowns, resuming by ``session_id``, who may see a kernel, and its sandbox."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.jupyter import HttpError, KernelSocket, call, of_type, stdout
from tests.security.hostile import assert_confined_alike, confinement_probe
from tests.servers import ROOT, Server, Servers, pid_alive, wait_until


class Api:
    """A server's kernel API, for one caller (its token, if any)."""

    def __init__(self, server: Server, token: str | None = None) -> None:
        self.server = server
        self.base = server.url
        self.token = token

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        return call(method, self.base + path, body, self.token)

    def start(self) -> str:
        model = self("POST", "/api/kernels", {"name": "python3"})
        return str(model["id"])

    def socket(self, kernel_id: str, **kwargs: Any) -> KernelSocket:
        ws_base = self.base.replace("http://", "ws://")
        return KernelSocket(f"{ws_base}/api/kernels/{kernel_id}/channels", token=self.token, **kwargs)


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", name="kernels")


@pytest.fixture
def api(server: Server) -> Api:
    return Api(server)


@pytest.fixture
def kernel(api: Api) -> Iterator[tuple[str, KernelSocket]]:
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    yield kernel_id, ws
    ws.close()
    try:
        api("DELETE", f"/api/kernels/{kernel_id}")
    except HttpError:
        pass  # the test ended it


def _idle(msg: dict[str, Any]) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


# -- REST ----------------------------------------------------------------------------------------

def test_the_api_lists_one_kernelspec_and_starts_kernels_with_uuid_ids(api: Api) -> None:
    assert "version" in api("GET", "/api")
    specs = api("GET", "/api/kernelspecs")
    assert specs["default"] == "python3" and list(specs["kernelspecs"]) == ["python3"]
    assert specs["kernelspecs"]["python3"]["spec"]["language"] == "python"
    assert api("GET", "/api/kernelspecs/python3")["name"] == "python3"
    with pytest.raises(HttpError) as unknown:
        api("GET", "/api/kernelspecs/julia")
    assert unknown.value.status == 404 and "python3" in unknown.value.body
    with pytest.raises(HttpError) as wrong:
        api("POST", "/api/kernels", {"name": "julia"})
    assert wrong.value.status == 404
    kernel_id = api.start()
    assert uuid.UUID(kernel_id) and len(kernel_id) == 36  # Jupyter Server's routes take no other form
    model = api("GET", f"/api/kernels/{kernel_id}")
    assert model["id"] == kernel_id and model["name"] == "python3" and model["execution_state"] == "idle"
    assert model["last_activity"].endswith("Z")
    assert kernel_id in [k["id"] for k in api("GET", "/api/kernels")]
    assert api("DELETE", f"/api/kernels/{kernel_id}") is None
    with pytest.raises(HttpError) as gone:
        api("GET", f"/api/kernels/{kernel_id}")
    assert gone.value.status == 404
    assert kernel_id not in [k["id"] for k in api("GET", "/api/kernels")]


def test_jupyter_server_sessions_are_one_per_kernel_and_keep_their_path(api: Api) -> None:
    made = api("POST", "/api/sessions", {"path": "work/a.ipynb", "name": "a.ipynb", "type": "notebook",
                                         "kernel": {"name": "python3"}})
    assert made["path"] == "work/a.ipynb" and made["name"] == "a.ipynb" and made["type"] == "notebook"
    assert made["kernel"]["id"] == made["id"] and made["kernel"]["name"] == "python3"
    assert made["id"] in [s["id"] for s in api("GET", "/api/sessions")]
    assert api("GET", f"/api/sessions/{made['id']}")["path"] == "work/a.ipynb"
    ws = api.socket(made["kernel"]["id"])  # its kernel is a kernel of the API
    assert stdout(ws.execute("print('in the session')")) == "in the session\n"
    ws.close()
    with pytest.raises(HttpError) as wrong:
        api("POST", "/api/sessions", {"path": "b.ipynb", "kernel": {"name": "julia"}})
    assert wrong.value.status == 404
    assert api("DELETE", f"/api/sessions/{made['id']}") is None
    assert made["id"] not in [s["id"] for s in api("GET", "/api/sessions")]


# -- the WebSocket: what a notebook sends --------------------------------------------------------

def test_kernel_info_and_cells_that_share_one_namespace(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    info_id = ws.send("kernel_info_request", {})
    answers = ws.answers(info_id)
    reply = of_type(answers, "kernel_info_reply")[0]
    assert reply["channel"] == "shell" and reply["content"]["protocol_version"] == "5.3"
    assert reply["content"]["language_info"]["name"] == "python" and "sandbox" in reply["content"]["banner"]
    assert {m["channel"] for m in answers if m["msg_type"] == "status"} == {"iopub"}
    first = ws.execute("x = 20\nprint('set')")
    second = ws.execute("x * 2 + 2")
    assert stdout(first) == "set\n"
    result = of_type(second, "execute_result")[0]
    assert result["content"]["data"]["text/plain"] == "42" and result["channel"] == "iopub"
    counts = [of_type(m, "execute_reply")[0]["content"]["execution_count"] for m in (first, second)]
    assert counts[1] == counts[0] + 1
    assert of_type(second, "execute_input")[0]["content"]["execution_count"] == counts[1]
    assert [m["msg_type"] for m in second] == ["status", "execute_input", "execute_result", "execute_reply", "status"]


def test_complete_inspect_is_complete_and_history(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    ws.execute("import math\nvalue_one = 1")
    complete = ws.reply(ws.send("complete_request", {"code": "math.fl", "cursor_pos": 7}))
    assert complete["msg_type"] == "complete_reply"
    assert any(match.endswith("floor") for match in complete["content"]["matches"])
    inspect = ws.reply(ws.send("inspect_request", {"code": "math.floor", "cursor_pos": 10, "detail_level": 0}))
    assert inspect["content"]["found"] and "floor" in inspect["content"]["data"]["text/plain"].lower()
    incomplete = ws.reply(ws.send("is_complete_request", {"code": "for i in range(3):"}))
    assert incomplete["content"]["status"] == "incomplete"
    history = ws.reply(ws.send("history_request", {"hist_access_type": "tail", "n": 5, "output": False,
                                                   "raw": True}))
    assert any("value_one = 1" in entry[2] for entry in history["content"]["history"])
    comm_info = ws.reply(ws.send("comm_info_request", {}))
    assert comm_info["content"]["status"] == "ok" and isinstance(comm_info["content"]["comms"], dict)


def test_input_asks_the_client_on_stdin_and_only_when_it_allows(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    msg_id = ws.send("execute_request", {"code": "name = input('who? ')\nprint('hello', name)",
                                         "allow_stdin": True})
    asked = ws.until(lambda m: m["msg_type"] == "input_request")[-1]
    assert asked["channel"] == "stdin" and asked["content"] == {"prompt": "who? ", "password": False}
    assert asked["parent_header"]["msg_id"] == msg_id
    ws.send("input_reply", {"value": "Ada", "status": "ok"}, channel="stdin")
    assert "hello Ada" in stdout(ws.answers(msg_id))
    refused = ws.execute("input('again? ')", allow_stdin=False)
    assert of_type(refused, "error")[0]["content"]["ename"] == "StdinNotImplementedError"
    assert not of_type(refused, "input_request")


def test_a_wait_for_input_does_not_count_against_the_time_limit(module_servers: Servers) -> None:
    server = module_servers("serve", "--time-limit", "2", name="kernels-time")
    api = Api(server)
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    msg_id = ws.send("execute_request", {"code": "print(input('? '))", "allow_stdin": True})
    ws.until(lambda m: m["msg_type"] == "input_request")
    time.sleep(3)  # longer than the time limit: a person typing
    ws.send("input_reply", {"value": "typed"}, channel="stdin")
    assert stdout(ws.answers(msg_id)) == "typed\n"
    spin = ws.send("execute_request", {"code": "while True: pass"})
    end = ws.until(lambda m: m["msg_type"] == "extension" and m["content"]["msg_type"] == "session_end", 20)
    assert end[-1]["content"]["content"]["reason"] == "time"
    assert any(m["msg_type"] == "error" and m["content"]["ename"] == "TimeLimitExceeded"
               and m["parent_header"]["msg_id"] == spin for m in end)
    ws.close()


def test_an_interrupt_stops_the_running_cell_and_keeps_the_kernel(kernel: tuple[str, KernelSocket], api: Api) -> None:
    kernel_id, ws = kernel
    ws.execute("kept = 'still here'")
    for how in ("websocket", "rest"):
        msg_id = ws.send("execute_request", {"code": "import time\nwhile True: time.sleep(0.01)"})
        ws.until(lambda m, i=msg_id: m["msg_type"] == "execute_input" and m["parent_header"]["msg_id"] == i)
        if how == "websocket":
            interrupt_id = ws.send("interrupt_request", {}, channel="control")
        else:
            assert api("POST", f"/api/kernels/{kernel_id}/interrupt") is None
        answers = ws.until(lambda m, i=msg_id: m["msg_type"] == "execute_reply" and m["parent_header"]["msg_id"] == i)
        if how == "websocket":
            reply = [m for m in answers if m["msg_type"] == "interrupt_reply"]
            assert reply and reply[0]["channel"] == "control" and reply[0]["parent_header"]["msg_id"] == interrupt_id
        assert answers[-1]["content"]["status"] == "error" and answers[-1]["content"]["ename"] == "KeyboardInterrupt"
    assert stdout(ws.execute("print(kept)")) == "still here\n"


def test_a_failed_cell_aborts_the_cells_queued_behind_it(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    failing = ws.send("execute_request", {"code": "import time; time.sleep(0.5); 1/0"})
    queued = ws.send("execute_request", {"code": "print('must not run')"})
    answers = ws.answers(queued)
    assert of_type(answers, "execute_reply")[0]["content"]["status"] == "aborted"
    assert not stdout(answers)
    assert any(m["msg_type"] == "error" for m in ws.received if m["parent_header"].get("msg_id") == failing)
    assert stdout(ws.execute("print('runs again')")) == "runs again\n"


def test_a_restart_gives_a_fresh_namespace_the_same_id_and_the_files(kernel: tuple[str, KernelSocket],
                                                                       api: Api) -> None:
    kernel_id, ws = kernel
    ws.execute("x = 1\nopen('notes.txt', 'w').write('kept across the restart')")
    model = api("POST", f"/api/kernels/{kernel_id}/restart")
    assert model["id"] == kernel_id and model["execution_state"] == "idle"
    assert of_type(ws.execute("x"), "error")[0]["content"]["ename"] == "NameError"
    assert stdout(ws.execute("print(open('notes.txt').read())")) == "kept across the restart\n"
    restart_id = ws.send("shutdown_request", {"restart": True}, channel="control")
    reply = ws.reply(restart_id)
    assert reply["channel"] == "control" and reply["content"] == {"status": "ok", "restart": True}
    ws.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "starting")
    assert stdout(ws.execute("print('after the second restart')")) == "after the second restart\n"


def test_a_shutdown_request_ends_the_kernel_and_the_socket_says_dead(kernel: tuple[str, KernelSocket],
                                                                     api: Api) -> None:
    kernel_id, ws = kernel
    msg_id = ws.send("shutdown_request", {"restart": False}, channel="control")
    reply = ws.reply(msg_id)
    assert reply["content"] == {"status": "ok", "restart": False}
    rest = ws.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead")
    end = next(m for m in rest if m["msg_type"] == "extension")["content"]["content"]
    assert end["reason"] == "shutdown"
    assert ws.receive(10) is None  # and it closes
    with pytest.raises(HttpError) as gone:
        api("GET", f"/api/kernels/{kernel_id}")
    assert gone.value.status == 404


def test_widgets_comms_work_over_the_websocket(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    shown = ws.execute("import ipywidgets as w\ns = w.IntSlider()\n"
                       "s.observe(lambda c: print('value', c['new']), names='value')\ndisplay(s)")
    opened = [m for m in of_type(shown, "comm_open")
              if m["content"]["data"]["state"].get("_model_name") == "IntSliderModel"]
    assert opened and opened[0]["channel"] == "iopub"
    comm_id = opened[0]["content"]["comm_id"]
    update = ws.send("comm_msg", {"comm_id": comm_id, "data": {"method": "update", "state": {"value": 7},
                                                                "buffer_paths": []}})
    assert stdout(ws.answers(update)) == "value 7\n"
    info = ws.reply(ws.send("comm_info_request", {"target_name": "jupyter.widget"}))
    assert comm_id in info["content"]["comms"]
    assert stdout(ws.execute("print(s.value)")) == "7\n"


def test_the_v1_subprotocol_is_spoken_when_offered_and_binary_buffers_cross_it(api: Api) -> None:
    kernel_id = api.start()
    ws = api.socket(kernel_id, v1=True)
    assert ws.subprotocol == "v1.kernel.websocket.jupyter.org"
    answers = ws.execute("import comm\nc = comm.create_comm(target_name='echo', data={'hi': 1}, "
                         "buffers=[b'\\x00\\x01binary'])")
    opened = of_type(answers, "comm_open")[0]
    assert opened["channel"] == "iopub" and opened["buffers"] == [b"\x00\x01binary"]
    assert stdout(ws.execute("print(6 * 7)")) == "42\n"
    ws.close()
    api("DELETE", f"/api/kernels/{kernel_id}")


def test_a_reconnecting_client_resumes_where_it_was(api: Api) -> None:
    kernel_id = api.start()
    first = api.socket(kernel_id, session_id="tab-1")
    first.execute("print('before')")
    msg_id = first.send("execute_request", {"code": "import time\ntime.sleep(1)\nprint('while away')"})
    first.close()  # before the answer comes
    time.sleep(2)
    back = api.socket(kernel_id, session_id="tab-1")
    assert "while away" in stdout(back.answers(msg_id))
    assert not [m for m in back.received if "before" in str(m["content"].get("text", ""))]  # nothing twice
    stranger = api.socket(kernel_id, session_id="tab-2")  # a new reader starts from now
    assert stdout(stranger.execute("print('now')")) == "now\n"
    assert not [m for m in stranger.received if m["parent_header"].get("msg_id") == msg_id]
    back.close()
    stranger.close()
    api("DELETE", f"/api/kernels/{kernel_id}")


def test_a_bad_frame_is_ignored_and_the_socket_goes_on(kernel: tuple[str, KernelSocket]) -> None:
    _, ws = kernel
    ws.ws.send("not json")
    ws.ws.send('{"header": "no"}')
    ws.ws.send_binary(b"\x00\x01")
    ws.send("debug_request", {}, channel="control")  # not one this kernel answers: dropped, as a kernel would
    assert stdout(ws.execute("print('fine')")) == "fine\n"


def test_an_unknown_kernel_is_a_404_before_the_upgrade(api: Api) -> None:
    with pytest.raises(Exception) as refused:
        api.socket(str(uuid.uuid4()))
    assert "404" in str(refused.value)


# -- who may see a kernel ---------------------------------------------------------------------------

def make_token(server: Server, name: str) -> str:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "singlecell", "user", "create", name, "--data-dir", str(server.data_dir)],
                   input=b"a long password\n", check=True, env=env, capture_output=True)
    made = subprocess.run([sys.executable, "-m", "singlecell", "token", "create", "--user", name, "--data-dir",
                           str(server.data_dir)], check=True, env=env, capture_output=True)
    return made.stdout.decode().split()[-1]


def test_a_kernel_belongs_to_the_token_that_started_it(server: Server) -> None:
    ada, bob = make_token(server, f"ada{uuid.uuid4().hex[:6]}"), make_token(server, f"bob{uuid.uuid4().hex[:6]}")
    as_ada, as_bob, anonymous = Api(server, ada), Api(server, bob), Api(server)
    kernel_id = as_ada.start()
    assert kernel_id in [k["id"] for k in as_ada("GET", "/api/kernels")]
    assert kernel_id in [k["id"] for k in call("GET", server.url + "/api/kernels", token=ada, scheme="Bearer")]
    for other in (as_bob, anonymous):
        assert kernel_id not in [k["id"] for k in other("GET", "/api/kernels")]
        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/interrupt"), ("POST", "/restart")):
            with pytest.raises(HttpError) as hidden:
                other(method, f"/api/kernels/{kernel_id}{path}")
            assert hidden.value.status == 404
        with pytest.raises(Exception) as refused:
            other.socket(kernel_id)
        assert "404" in str(refused.value)
    with pytest.raises(HttpError) as bad:
        Api(server, "sc_not-a-token")("GET", "/api/kernels")
    assert bad.value.status == 401
    ws = as_ada.socket(kernel_id)  # the token as a query parameter, as browsers send it
    assert stdout(ws.execute("print('mine')")) == "mine\n"
    ws.close()
    assert "/channels?" in server.log_text() and ada not in server.log_text()  # never logged
    as_ada("DELETE", f"/api/kernels/{kernel_id}")


def test_require_token_refuses_requests_without_one(module_servers: Servers) -> None:
    server = module_servers("serve", "--require-token", name="kernels-token", ready=False)  # no cell without one
    server.wait_up()
    with pytest.raises(HttpError) as refused:
        Api(server)("POST", "/api/kernels", {})
    assert refused.value.status == 401 and "token" in refused.value.body
    token = make_token(server, "carol")
    api = Api(server, token)
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    assert stdout(ws.execute("print(1 + 1)")) == "2\n"
    ws.close()
    api("DELETE", f"/api/kernels/{kernel_id}")


# -- limits and the sandbox -----------------------------------------------------------------------------

def test_a_kernel_without_input_ends_idle_and_its_socket_says_dead(module_servers: Servers) -> None:
    server = module_servers("serve", "--session-idle", "2", name="kernels-idle")
    api = Api(server)
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    rest = ws.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead", 20)
    assert next(m for m in rest if m["msg_type"] == "extension")["content"]["content"]["reason"] == "idle"
    with pytest.raises(HttpError):
        api("GET", f"/api/kernels/{kernel_id}")


def test_deleting_a_kernel_kills_its_process(api: Api) -> None:
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    pid = int(stdout(ws.execute("import os\nprint(os.getpid())")))  # kernels share the host's pid namespace
    assert pid_alive(pid)
    api("DELETE", f"/api/kernels/{kernel_id}")
    ws.close()
    assert wait_until(lambda: not pid_alive(pid), 10), "the kernel outlived its DELETE"


def test_a_jupyter_clients_kernel_is_as_confined_as_a_one_shot_kernel(server: Server, api: Api,
                                                                        active_layers: set[str]) -> None:
    probe = confinement_probe(server)
    one_shot = server.client().eval(probe + "print(probe())")["stdout"].strip()
    kernel_id = api.start()
    ws = api.socket(kernel_id)
    in_kernel = stdout(ws.execute(probe + "print(probe())")).strip()
    ws.close()
    api("DELETE", f"/api/kernels/{kernel_id}")
    assert_confined_alike(in_kernel, one_shot, active_layers)
