"""Real nginx (Debian's package; .ci/run installs it) running the repository's nginx.conf in
front of two `singlecell web` processes and a device, with a directory filestore it serves
itself (X-Accel-Redirect)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from singlecell.client import Client
from tests.e2e.test_streaming import read_until, texts
from tests.servers import ROOT, Server, free_port, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_config(port: int, upstreams: list[int], files: Path, run: Path) -> str:
    """The repository's nginx.conf with this test's ports and folders on its "#:" lines."""
    text = (ROOT / "nginx.conf").read_text()
    text = text.replace("user www-data;", "user root;")  # our folders are root's, mode 700
    text = re.sub(r"pid \S+;", f"pid {run / 'nginx.pid'};", text)
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    servers = "".join(f"server 127.0.0.1:{p};\n        " for p in upstreams)
    text = re.sub(r"server 127\.0\.0\.1:8888;.*\n\s*server 127\.0\.0\.1:8889;[^\n]*", servers.rstrip(), text)
    text = text.replace("alias /srv/singlecell/files/;", f"alias {files}/;")
    assert str(files) in text and f"127.0.0.1:{upstreams[1]}" in text  # the file changed shape: update this
    return text


@pytest.fixture
def behind_nginx(start_server: Callable[..., Server], tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    if not os.path.exists(NGINX):
        reason = "the nginx test needs Debian's nginx: apt-get install nginx"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: .ci/run installs it)")
        pytest.skip(reason)
    data = tmp_path / "data"
    files = tmp_path / "files"
    flags = ["--files", f"dir:{files}", "--accel-redirect", "/_files/"]
    webs = [start_server("web", *flags, data_dir=data), start_server("web", *flags, data_dir=data)]
    device = start_server("device", "--files", f"dir:{files}", data_dir=data)
    device.wait_for_log(r"device \S+ running")
    port = free_port()
    run = tmp_path / "nginx"
    run.mkdir()
    (run / "nginx.conf").write_text(nginx_config(port, [w.port for w in webs if w.port], files, run))
    log = open(run / "nginx.log", "wb")
    proc = subprocess.Popen([NGINX, "-p", f"{ROOT}/", "-c", str(run / "nginx.conf"), "-g", "daemon off;"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, (run / "nginx.log").read_text()
            try:
                with Client(url, timeout=5) as c:
                    c.health()
                return True
            except OSError:
                return False
        assert wait_until(up, 20), (run / "nginx.log").read_text()
        yield url, webs
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_cells_run_through_nginx_on_both_web_processes(behind_nginx: tuple[str, list[Server]]) -> None:
    url, webs = behind_nginx
    with Client(url) as client:
        for i in range(8):
            assert client.eval(f"print({i} * 2)")["stdout"] == f"{i * 2}\n"
        # /execute answers with URLs of the front door, port included
        status, _, body = client.request("POST", "/execute", json.dumps({"code": "print('hi')"}).encode(),
                                         {"Content-Type": "application/json"})
        answer = json.loads(body)
        assert status == 202 and answer["output_url"].startswith(url + "/output/")
    for web in webs:  # nginx spread the requests over both
        assert "POST /eval" in web.log_text()


def test_a_long_poll_is_held_through_nginx(behind_nginx: tuple[str, list[Server]]) -> None:
    url, _ = behind_nginx
    with Client(url) as client:
        request_id = client.execute("import time\nprint('a', flush=True)\ntime.sleep(8)\nprint('b')")
        _, page = read_until(client, request_id, lambda items: texts(items) == "a\n")
        after = page["next"]
        started = time.monotonic()
        held = client.output(request_id, after=after, wait=4)
        assert held["messages"] == [] and 3.5 < time.monotonic() - started < 7  # held, not cut off
        done = client.output(request_id, after=after, wait=25)
        while not done["done"]:
            done = client.output(request_id, after=done["next"], wait=25)


def test_nginx_serves_static_files_and_the_cells_files_itself(behind_nginx: tuple[str, list[Server]]) -> None:
    url, webs = behind_nginx
    with Client(url) as client:
        status, headers, body = client.request("GET", "/static/singlecell.js", None, {"Accept-Encoding": "gzip"})
        assert status == 200 and headers.get("content-encoding") == "gzip"
        assert headers["server"] == "nginx" and "access-control-allow-origin" in headers
        assert not any("/static/singlecell.js" in w.log_text() for w in webs)  # never reached the web tier
        name = "résumé 100% <b>.txt"
        summary = client.eval(f"open({name!r}, 'w').write('bytes from the folder')")
        (record,) = summary["files"]
        path = urllib.parse.urlsplit(record["url"]).path
        status, headers, body = client.request("GET", path)
        assert status == 200 and body == b"bytes from the folder"
        assert "sandbox" in headers["content-security-policy"] and "x-accel-redirect" not in headers
        assert headers["content-type"].startswith("text/plain")
        # the web tier checked the request and the name, and sent no bytes itself
        assert wait_until(lambda: any(" GET /files/" in w.log_text() for w in webs), 10)  # logged after it answered
        status, _, body = client.request("GET", path.rsplit("/", 1)[0] + "/nothing-here.txt")
        assert status == 404 and b"no file named" in body


def test_a_body_over_the_limit_gets_the_servers_json_answer(behind_nginx: tuple[str, list[Server]]) -> None:
    url, _ = behind_nginx
    with Client(url) as client:
        status, headers, body = client.request("POST", "/execute", b"x" * (8640 * 1024 + 1),
                                               {"Content-Type": "text/plain"})
        assert status == 413 and headers["content-type"].startswith("application/json")
        assert "code up to 64 KiB" in json.loads(body)["error"]["message"]
        # a body at the limit passes nginx; the web tier judges it (here: code over 64 KiB)
        status, _, body = client.request("POST", "/execute", b"x" * (8640 * 1024),
                                         {"Content-Type": "text/plain"})
        assert status == 413 and "the code is" in json.loads(body)["error"]["message"]


def test_a_live_session_works_through_nginx(behind_nginx: tuple[str, list[Server]]) -> None:
    """Inputs and the page's /watch pass nginx, spread over both web processes; the session is
    counted against the client's address (here both are 127.0.0.1: nginx's X-Real-IP header is
    what the web tier reads, xheaders=True)."""
    from tests.e2e.test_sessions import Session

    url, webs = behind_nginx
    with Client(url) as client:
        session = Session(client)
        for n in (1, 2, 3):  # nginx spreads these over both web processes
            answers = session.answers(session.update({"value": n}))
            assert "".join(m["content"]["text"] for m in answers if m["msg_type"] == "stream") == f"value {n}\n"
        status, _, body = client.request("GET", f"/watch?ids={session.id}:{session.after}&wait=2")
        assert status == 200 and json.loads(body)["requests"] == {}  # live, nothing new: held, then empty
        clients = webs[0].db_rows("SELECT client FROM sessions WHERE request_id = ?", (session.id,))
        assert clients == [("127.0.0.1",)]
        client.stop(session.id)
        assert session.ended()["reason"] == "stopped"


def test_a_kernel_websocket_works_through_nginx_and_resumes_on_the_other_web_process(
        behind_nginx: tuple[str, list[Server]]) -> None:
    """The kernel WebSocket is upgraded by nginx; a client that reconnects (to whichever web
    process nginx picks) with its session_id gets what came while it was away."""
    from tests.jupyter import KernelSocket, call, stdout

    url, webs = behind_nginx
    kernel_id = call("POST", url + "/api/kernels", {})["id"]
    ws_url = f"{url.replace('http://', 'ws://')}/api/kernels/{kernel_id}/channels"
    first = KernelSocket(ws_url, session_id="reader")
    assert stdout(first.execute("x = 3\nprint('through nginx')")) == "through nginx\n"
    msg_id = first.send("execute_request", {"code": "import time\ntime.sleep(1)\nprint(x * 14)"})
    first.close()
    time.sleep(2)
    back = KernelSocket(ws_url, session_id="reader")  # nginx picks either web process
    assert stdout(back.answers(msg_id)) == "42\n"  # what came while it was away
    back.close()
    again = KernelSocket(ws_url, session_id="reader")
    assert stdout(again.execute("print(x)")) == "3\n"
    again.close()
    direct = [call("GET", f"{web.url}/api/kernels/{kernel_id}")["id"] for web in webs]
    assert direct == [kernel_id, kernel_id]  # both web processes know it: it is in the store
    call("DELETE", f"{url}/api/kernels/{kernel_id}")
