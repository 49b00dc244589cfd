"""SageMathCell's clients against our server: the flow of ``contrib/sagecell-client/
sagecell-client.py`` (``POST /kernel``, then its WebSocket with ``websocket-client``) and of its
health check ``sagecell-service.py`` (``POST /service``), step by step as those scripts take them;
only their Sage code (``factorial(2020)``, ``show(plot(sin))``) becomes Python."""

from __future__ import annotations

import json
import random
import urllib.parse
import urllib.request
from typing import Any
from uuid import uuid4

import pytest
import websocket

from tests.jupyter import HttpError, call
from tests.servers import Server, Servers


@pytest.fixture(scope="module")
def server(module_servers: Servers) -> Server:
    return module_servers("serve", name="sagecell")


def post_form(url: str, data: dict[str, str], accept_json: bool = False) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    if accept_json:
        request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


class SageCell:
    """sagecell-client.py's class, as it is written there (requests → urllib)."""

    def __init__(self, url: str, timeout: float = 10) -> None:
        if not url.endswith("/"):
            url += "/"
        _, headers, response = post_form(url + "kernel", {"accepted_tos": "true"}, accept_json=True)
        self.kernel_id = response["id"]
        self.header_id = headers.get("Jupyter-Kernel-Id") or headers.get("Jupyter-Kernel-ID")
        self.kernel_url = "{ws_url}kernel/{id}/".format(**response)
        websocket.setdefaulttimeout(timeout)
        self._ws = websocket.create_connection(self.kernel_url + "channels",
                                               header={"Jupyter-Kernel-ID": response["id"]})
        self.shell_messages: list[dict[str, Any]] = []
        self.iopub_messages: list[dict[str, Any]] = []

    def execute_request(self, code: str) -> dict[str, list[dict[str, Any]]]:
        self.shell_messages = []
        self.iopub_messages = []
        self._ws.send(self._make_execute_request(code))
        got_execute_reply = False
        got_idle_status = False
        while not (got_execute_reply and got_idle_status):
            msg = json.loads(self._ws.recv())
            if msg["channel"] == "shell":
                self.shell_messages.append(msg)
                if msg["header"]["msg_type"] == "execute_reply":
                    got_execute_reply = True
            elif msg["channel"] == "iopub":
                self.iopub_messages.append(msg)
                if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    got_idle_status = True
        return {"shell": self.shell_messages, "iopub": self.iopub_messages}

    def _make_execute_request(self, code: str) -> str:
        session = str(uuid4())
        execute_request = {
            "channel": "shell",
            "header": {"msg_type": "execute_request", "msg_id": str(uuid4()), "username": "", "session": session},
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False,
                        "user_expressions": {"_sagecell_files": "sys._sage_.new_files()"}, "allow_stdin": False},
        }
        return json.dumps(execute_request)

    def close(self) -> None:
        self._ws.close()


def test_the_sagecell_client_flow_runs_code_in_a_kernel_that_keeps_its_state(server: Server) -> None:
    cell = SageCell(server.url)
    assert cell.header_id == cell.kernel_id and len(cell.kernel_id) == 36
    answer = cell.execute_request("import math\nprint(math.factorial(20))")
    text = "".join(m["content"]["text"] for m in answer["iopub"] if m["header"]["msg_type"] == "stream")
    assert text == "2432902008176640000\n"
    reply = answer["shell"][0]["content"]
    assert reply["status"] == "ok" and reply["user_expressions"]["_sagecell_files"]["status"] == "error"
    again = cell.execute_request("math.factorial(5)")  # the same kernel: math is still imported
    results = [m for m in again["iopub"] if m["header"]["msg_type"] == "execute_result"]
    assert results[0]["content"]["data"]["text/plain"] == "120"
    cell.close()
    status, _, _ = post_form(server.url + f"/kernel/{cell.kernel_id}", {"method": "DELETE"})
    assert status == 200
    with pytest.raises(HttpError) as gone:
        call("GET", f"{server.url}/api/kernels/{cell.kernel_id}")
    assert gone.value.status == 404


def test_the_sagecell_service_health_check_passes(server: Server) -> None:
    a, b = random.randint(-2**31, 2**31), random.randint(-2**31, 2**31)
    code = f"print({a} + {b})"  # sagecell-service.py's, without show(plot(sin)), which is Sage's
    status, _, reply = post_form(server.url + "/service", {"code": code, "accepted_tos": "true"})
    assert status == 200
    assert reply["success"] and "stdout" in reply and int(reply["stdout"].strip()) == a + b
    assert reply["execute_reply"]["status"] == "ok" and "stderr" not in reply


def test_the_service_says_a_failed_computation_did_not_succeed(server: Server) -> None:
    status, _, reply = post_form(server.url + "/service", {"code": "import sys\nprint('x', file=sys.stderr)\n1/0"})
    assert status == 200 and reply["success"] is False
    assert reply["stderr"] == "x\n" and reply["execute_reply"]["ename"] == "ZeroDivisionError"
    status, _, body = post_form(server.url + "/service", {"code": "x" * 65001})
    assert status == 413 and "65000" in body
    status, _, body = post_form(server.url + "/service", {"accepted_tos": "true"})
    assert status == 400 and "code" in body
