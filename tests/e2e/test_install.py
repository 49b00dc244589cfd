"""``pip install .`` gives a working ``singlecell`` command that serves static/ and templates/
from the installed package, started from a folder that is not the checkout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from singlecell.client import Client
from tests.servers import free_port

COMMAND = Path(sys.executable).parent / "singlecell"


@pytest.mark.skipif(not COMMAND.exists(), reason=f"no installed singlecell command beside {sys.executable}; "
                    "install the project with: pip install '.[test]'")
def test_the_installed_command_serves_the_page_the_embed_script_and_cells(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINGLECELL_") and k != "PYTHONPATH"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(COMMAND), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        client.wait_until_up(60)
        status, headers, page = client.request("GET", "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"<title>singlecell" in page
        status, headers, script = client.request("GET", "/static/singlecell.js")
        assert status == 200 and b"SingleCellBlock" in script
        status, _, answer = client.request("POST", "/eval", b"print(6*7)", {"Content-Type": "text/plain"})
        assert (status, answer) == (200, b"42\n")
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
