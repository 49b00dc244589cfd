"""The kernel template takes only the control messages of device/control.py: anything else is
answered, saying why, and the template goes on forking (it holds every ready kernel)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from jupyter_client.session import Session

from device import control
from tests.servers import ROOT

ANSWER_WITHIN_MS = 30_000


class Template:
    """``python -P -m device.template`` started as its device starts it, driven by the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PAIR)
        self.socket.bind(f"ipc://{folder}/template")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-P", "-m", "device.template", f"ipc://{folder}/template",
                                         str(os.getpid())], env=env, cwd=ROOT, stderr=subprocess.PIPE)

    def send(self, raw: bytes) -> None:
        self.socket.send(raw)

    def answer(self) -> control.ToDevice:
        assert self.socket.poll(ANSWER_WITHIN_MS), "the template did not answer"
        return control.to_device(self.socket.recv())

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> str:
        if self.alive():
            self.send(control.Exit().to_json())
            self.process.wait(10)
        self.socket.close(0)
        self.context.term()
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace")


@pytest.fixture
def template(tmp_path: Path) -> Iterator[Template]:
    t = Template(tmp_path)
    t.send(control.Configure(preload=[], layers={}).to_json())
    assert isinstance(t.answer(), control.Ready)
    yield t
    t.close()


def spec(folder: Path, slot: str) -> control.KernelSpec:
    home = folder / slot
    for sub in ("work", "tmp"):
        (home / sub).mkdir(parents=True)
    return control.KernelSpec(slot=slot, endpoint=f"ipc://{home}/socket", key=secrets.token_hex(32), home=str(home),
                              workdir=str(home / "work"), tmpdir=str(home / "tmp"), output_limit=1000)


def fork_and_hear_it_start(template: Template, folder: Path, slot: str) -> None:
    """A well-formed fork still makes a kernel that starts and says so, signed with its key."""
    kernel = spec(folder, slot)
    sock = template.context.socket(zmq.PAIR)
    sock.bind(kernel.endpoint)
    try:
        template.send(kernel.to_json())
        forked = template.answer()
        assert isinstance(forked, control.Forked) and forked.slot == slot, forked
        assert sock.poll(ANSWER_WITHIN_MS), "the kernel never said it started"
        session = Session(key=kernel.key_bytes, signature_scheme="hmac-sha256")
        msg = session.deserialize(session.feed_identities(sock.recv_multipart())[1])
        assert msg["msg_type"] == "status" and msg["content"]["execution_state"] == "starting"
        os.killpg(forked.pid, 9)
        exited = template.answer()
        assert isinstance(exited, control.Exited) and exited.pid == forked.pid
    finally:
        sock.close(0)


def bad_messages(folder: Path) -> list[tuple[bytes, str | None, str]]:
    """(raw message, the slot the answer names, words the error must hold)."""
    good = json.loads(spec(folder, "template-of-bad").to_json())
    without_key = {k: v for k, v in good.items() if k != "key"}
    return [
        (json.dumps({**without_key, "slot": "s1"}).encode(), "s1", "'key'"),
        (json.dumps({**good, "slot": "s2", "output_limit": "lots"}).encode(), "s2", "'output_limit'"),
        (json.dumps({**good, "slot": "s3", "uid": True}).encode(), "s3", "'uid'"),
        (json.dumps({**good, "slot": "s4", "cgroups": [1]}).encode(), "s4", "'cgroups'"),
        (b"not json at all", None, "not JSON"),
        (b"\xff\xfe", None, "not JSON"),
        (b"[1, 2]", None, "JSON object"),
        (json.dumps({"op": "explode"}).encode(), None, "unknown control message"),
        (json.dumps({"op": "configure", "preload": [], "layers": {}}).encode(), None, "configured already"),
        (json.dumps({"op": "configure", "preload": "numpy", "layers": {}}).encode(), None, "'preload'"),
    ]


def test_every_bad_control_message_is_answered_and_the_template_goes_on(template: Template, tmp_path: Path) -> None:
    fork_and_hear_it_start(template, tmp_path, "before")
    for raw, slot, words in bad_messages(tmp_path):
        template.send(raw)
        answer = template.answer()
        if slot is not None:
            assert isinstance(answer, control.ForkFailed) and answer.slot == slot, (raw, answer)
        else:
            assert isinstance(answer, control.Refused), (raw, answer)
        assert words in answer.error, (raw, answer)
        assert template.alive(), f"the template died of {raw!r}"
    fork_and_hear_it_start(template, tmp_path, "after")
    assert "refused a control message" in template.close()


def test_a_fork_before_configure_is_refused(tmp_path: Path) -> None:
    template = Template(tmp_path)
    try:
        template.send(spec(tmp_path, "early").to_json())
        answer = template.answer()
        assert isinstance(answer, control.ForkFailed) and "before the template was configured" in answer.error
        template.send(control.Configure(preload=[], layers={}).to_json())
        assert isinstance(template.answer(), control.Ready)
        fork_and_hear_it_start(template, tmp_path, "configured")
    finally:
        template.close()
