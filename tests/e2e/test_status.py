"""``/status`` and ``singlecell stats``: what the server did, read from the store, on a real server."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable

from tests.servers import ROOT, Server, wait_until


def page(server: Server) -> str:
    with urllib.request.urlopen(server.url + "/status", timeout=30) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
        return answer.read().decode()


def test_the_status_page_and_stats_count_the_cells_and_list_the_device_and_its_sandbox(
        start_server: Callable[..., Server]) -> None:
    server = start_server("serve", "--time-limit", "1")
    with server.client() as client:
        assert client.eval("print(1)")["status"] == "ok"
        assert client.eval("1/0")["status"] == "error"
        assert client.eval("import time; time.sleep(5)")["status"] == "timeout"
    text = page(server)
    ended = re.search(r"<dt>Cells ended</dt><dd>(\d+)</dd>", text)
    assert ended is not None and int(ended.group(1)) >= 4, text  # and the first cell serve ran itself
    for status in ("done", "error", "timeout"):
        assert f'<span class="tag">{status} ' in text
    # the device reported itself, with what `singlecell doctor` says of its layers
    assert wait_until(lambda: "<h3>" in page(server), 10)
    text = page(server)
    assert re.search(r"<h3>\S+ <span class=\"muted\">on ", text)
    for layer in ("identity", "network", "filesystem", "syscalls"):
        assert f"<td>{layer}</td>" in text
    assert text.count("<svg") == 3 and '<meta http-equiv="refresh" content="30">' in text

    stats = subprocess.run([sys.executable, "-m", "singlecell", "stats", "--data-dir", str(server.data_dir),
                            "--minutes", "3"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert stats.returncode == 0, stats.stderr
    assert re.search(r"ended \d+ \(done \d+, error 1, timeout 1\)", stats.stdout), stats.stdout
    assert "end to end" in stats.stdout and len(re.findall(r"^\d\d:\d\d ", stats.stdout, re.M)) == 3


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singlecell", "requests", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_requests_list_and_show_print_what_the_store_holds_without_obeying_a_cells_escapes(
        start_server: Callable[..., Server]) -> None:
    server = start_server("serve")
    with server.client() as client:
        shown = client.eval("print('\\x1b[2J\\x1b]0;owned\\x07cleared?')\nopen('out.txt', 'w').write('x')\n6 * 7")
        failed = client.eval("1/0")
    listing = cli(server, "list", "--since", "10m")
    assert listing.returncode == 0, listing.stderr
    assert shown["id"] in listing.stdout and failed["id"] in listing.stdout
    assert listing.stdout.index(failed["id"]) < listing.stdout.index(shown["id"])  # newest first
    errors_only = cli(server, "list", "--status", "error")
    assert failed["id"] in errors_only.stdout and shown["id"] not in errors_only.stdout
    show = cli(server, "show", shown["id"])
    assert show.returncode == 0, show.stderr
    assert "status   done" in show.stdout and "execute_result" in show.stdout and "'42'" in show.stdout
    assert "counted  a:127.0.0.1 (an address's (no token) limits)" in show.stdout
    assert re.search(r"^cpu      \d+\.\d{3} s$", show.stdout, re.M), show.stdout
    assert f"out.txt  1 bytes  text/plain  /files/{shown['id']}/out.txt" in show.stdout
    assert "\x1b" not in show.stdout + listing.stdout and "\\x1b[2J" in show.stdout  # shown, not obeyed
    # read by `head`, which closes the pipe after one line while 300 KB (more than a pipe holds)
    # are still to come: no traceback, as from any Unix tool
    with server.client() as client:
        long = client.eval("print('x' * 300_000)")
    piped = subprocess.run(f"{sys.executable} -m singlecell requests show {long['id']} --data-dir "
                           f"{server.data_dir} | head -1", shell=True, capture_output=True, text=True, cwd=ROOT,
                           timeout=60)
    assert piped.stdout == f"request  {long['id']}\n" and "Traceback" not in piped.stderr, piped.stderr
    for bad, says in ((["list", "--status", "finished"], "is not a status"), (["list", "--since", "soon"], "--since"),
                      (["show", "0" * 32], "no request has the id")):
        answer = cli(server, *bad)
        assert answer.returncode != 0 and says in answer.stderr, answer.stderr
