"""Attacks on the channel between a kernel and its device. A cell can find its kernel's socket
and HMAC key in its own memory and sign anything: the device must still file what arrives
under the kernel's own request only, believe nothing else it says, and survive whatever bytes
come down the socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from singlecell.client import Client
from tests.security.hostile import (
    ENDED_WITHIN,
    OUTPUT_LIMIT,
    assert_limit,
    assert_server_alive,
    assert_serves_normally,
    assert_victim_untouched,
    follow,
    printed_json,
    server_pids,
    start_victim,
)
from tests.servers import Server, outcome

# How a cell gets at its channel: the Channel object (socket, lock, signer with the key) is
# made in the kernel after the fork, so the garbage collector lists it.
CHANNEL = """
import gc, json, uuid
from jupyter_client.session import Session
channels = [o for o in gc.get_objects() if hasattr(getattr(o, 'signer', None), 'frames') and hasattr(o, 'socket')]
channel = channels[0]
signer, socket = channel.signer, channel.socket

def send_frames(parts, signature=None):
    with channel.lock:
        socket.send_multipart([b'<IDS|MSG>', signer.frames.sign(parts) if signature is None else signature, *parts],
                              copy=False)

def header(msg_type, **more):
    return {'msg_id': uuid.uuid4().hex, 'msg_type': msg_type, 'username': 'kernel', 'session': signer.session,
            'date': '2020-01-01T00:00:00+00:00', 'version': '5.3', **more}
"""

FORGE = """
victim = header('execute_request', msg_id={victim!r})
forged = [('stream', {{'name': 'stdout', 'text': 'FORGED\\n'}}),
          ('display_data', {{'data': {{'text/plain': 'FORGED'}}, 'metadata': {{}}, 'transient': {{}}}}),
          ('error', {{'ename': 'Forged', 'evalue': 'FORGED', 'traceback': []}}),
          ('execute_reply', {{'status': 'error', 'execution_count': 1, 'ename': 'Forged', 'evalue': 'FORGED',
                              'traceback': []}}),
          ('status', {{'execution_state': 'idle'}})]
print(json.dumps({{'channels': len(channels), 'forged': len(forged)}}), flush=True)
for msg_type, content in forged:
    own = header(msg_type, msg_id=victim['msg_id'])  # and claim to be the victim's own message
    send_frames([json.dumps(part).encode() for part in (own, victim, {{}}, content)])
"""


def test_forged_messages_for_another_request_land_only_in_the_attackers_own(client: Client, second_client: Client,
                                                                           hostile: Server) -> None:
    before = server_pids(hostile)
    victim, victim_pid = start_victim(second_client)
    attack = outcome(client, CHANNEL + FORGE.format(victim=victim), deadline=ENDED_WITHIN)
    assert printed_json(attack) == {"channels": 1, "forged": 5}  # it found its key and sent them all
    assert all(m["parent_header"]["msg_id"] == attack["id"] for m in attack["messages"])
    ended = assert_victim_untouched(second_client, victim, victim_pid)
    assert "FORGED" not in json.dumps(ended["messages"]), "a forged message reached the victim's request"
    assert all(m["parent_header"]["msg_id"] == victim for m in ended["messages"])
    assert_server_alive(hostile, before)
    assert_serves_normally(client)


FORGE_EXTENSION = """
channel.send('extension', {content!r})
"""


@pytest.mark.parametrize("content", [
    {"msg_type": "files", "content": {"files": [{"name": "report.pdf", "size": 1, "url": "@evil.example/report.pdf"}]}},
    {"msg_type": "files", "content": {"files": [{"name": "passwd", "size": 1, "url": "/files/../../etc/passwd"}]}},
    {"msg_type": "files", "content": {"files": [{"nom": "broken"}]}},
    {"msg_type": "files", "content": {"files": "not a list"}},
    {"msg_type": "limit", "content": {"limit": "time", "value": 1, "ename": "TimeLimitExceeded", "evalue": "forged"}},
], ids=["files-off-site", "files-elsewhere", "files-malformed", "files-not-a-list", "limit"])
def test_the_cell_cannot_forge_what_only_the_device_says(client: Client, content: dict[str, object]) -> None:
    """The ``files`` and ``limit`` extensions are the device's word: which files the cell left,
    which limit stopped it. A cell that sends them itself must not be believed (its links would
    point wherever it likes, beside the server's own) nor break the answer of /eval."""
    answer = client.eval(CHANNEL + FORGE_EXTENSION.format(content=content) + "print('sent')")  # a 500 raises here
    assert answer["stdout"] == "sent\n", answer
    assert answer["files"] == [], f"/eval lists files the device never collected: {answer['files']}"
    ended = follow(client, answer["id"])
    assert ended["limits"] == [], "a limit the cell never ran into is reported"
    assert answer["status"] == "ok"
    assert_serves_normally(client)


BAD_FRAMES = """
parts = [json.dumps(x).encode() for x in (header('stream'), {{}}, {{}}, {{'name': 'stdout', 'text': 'unsigned'}})]
how = {how!r}
if how == 'wrong-key':
    send_frames(parts, Session(key=b'guessed', signature_scheme='hmac-sha256').sign(parts))
elif how == 'unsigned':
    send_frames(parts, b'')
elif how == 'replayed':
    send_frames(parts)
    send_frames(parts)
elif how == 'no-delimiter':
    with channel.lock:
        socket.send_multipart([signer.frames.sign(parts), *parts])
import time
time.sleep(2)
print('not stopped')
"""


@pytest.mark.parametrize("how", ["wrong-key", "unsigned", "replayed", "no-delimiter"])
def test_a_message_not_signed_with_the_kernels_key_stops_only_that_cell(client: Client, second_client: Client,
                                                                        how: str) -> None:
    victim, victim_pid = start_victim(second_client)
    ended = outcome(client, CHANNEL + BAD_FRAMES.format(how=how), deadline=ENDED_WITHIN)
    assert ended["status"] == "aborted", ended
    assert ended["error"]["ename"] == "KernelProtocolError"
    assert "not stopped" not in ended["stdout"]
    assert_victim_untouched(second_client, victim, victim_pid)
    assert_serves_normally(client)


MALFORMED = """
import functools
frames = {{
    'header-without-msg-id': [{{'msg_type': 'stream'}}, {{}}, {{}}, {{'name': 'stdout', 'text': 'x'}}],
    'header-a-list': [['stream'], {{}}, {{}}, {{'name': 'stdout', 'text': 'x'}}],
    'too-few-frames': [header('stream'), {{}}],
    'content-a-list': [header('execute_reply'), {{}}, {{}}, ['ok']],
    'content-a-string': [header('status'), {{}}, {{}}, 'idle'],
    'not-json': [b'\\xff\\xfe', {{}}, {{}}, {{}}],
    # deeper than the device walks: it stops the cell, where it once crashed and left it running
    'nested-too-deep': [header('display_data'), {{}}, {{}},
                        {{'data': functools.reduce(lambda inner, _: {{'a': inner}}, range(900), {{}})}}],
}}[{how!r}]
send_frames([f if isinstance(f, bytes) else json.dumps(f).encode() for f in frames])
import time
time.sleep(2)
print('not stopped')
"""


@pytest.mark.parametrize("how", ["header-without-msg-id", "header-a-list", "too-few-frames", "content-a-list",
                                 "content-a-string", "not-json", "nested-too-deep"])
def test_a_signed_but_malformed_message_still_ends_the_request(client: Client, hostile: Server, how: str) -> None:
    """Every request reaches a terminal status, whatever its kernel sends, signed or not."""
    before = server_pids(hostile)
    request_id = client.execute(CHANNEL + MALFORMED.format(how=how))
    ended = follow(client, request_id, deadline=6)
    assert ended["status"] == "aborted", ended["error"]
    assert ended["error"]["ename"] == "KernelProtocolError"
    assert_server_alive(hostile, before)
    assert_serves_normally(client)


def _peak_memory_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) >> 10
    raise AssertionError(f"no VmHWM for process {pid}")


OVERSIZED = """
text = b'x' * (40 << 20)
send_frames([json.dumps(header('stream')).encode(), b'{}', b'{}', b'{"name": "stdout", "text": "' + text + b'"}'])
del text
import time
time.sleep(2)
"""
FLOOD = """
for i in range(200_000):
    send_frames([json.dumps(header('stream')).encode(), b'{}', b'{}', b'{"name": "stdout", "text": "x"}'])
"""


@pytest.mark.parametrize("code", [OVERSIZED, FLOOD], ids=["one-40-MB-message", "200000-tiny-messages"])
def test_output_sent_past_the_kernels_own_cap_is_neither_stored_nor_buffered(client: Client, hostile: Server,
                                                                              code: str) -> None:
    """The kernel cuts output at the limit, but a cell can write to the socket itself: the device
    must not store it, nor hold a message of any size in memory (with --memory-limit per cell
    and --kernels cells at once, that is how a cell would take the device down)."""
    before = server_pids(hostile)
    device = before["device"]
    Path(f"/proc/{device}/clear_refs").write_text("5")  # start the device's peak memory afresh
    start_mb = _peak_memory_mb(device)
    ended = outcome(client, CHANNEL + code, deadline=ENDED_WITHIN)
    grown = _peak_memory_mb(device) - start_mb
    stored = len(ended["stdout"]) + len(ended["stderr"])
    problems = [f"{stored} bytes of output were stored (limit {OUTPUT_LIMIT})"] if stored > 2 * OUTPUT_LIMIT else []
    problems += [f"{len(ended['messages'])} messages were stored"] if len(ended["messages"]) >= 10_000 else []
    problems += [f"the device's peak memory grew by {grown} MB for one cell's messages"] if grown >= 24 else []
    assert problems == [], "; ".join(problems)
    if code is OVERSIZED:
        # ZeroMQ drops a message past the device's MAXMSGSIZE (and the connection with it)
        # before it reaches memory: the device never sees it, so no limit is reported, and
        # the cell's remaining output arrives over the re-made connection
        assert ended["status"] in ("done", "aborted"), ended
    else:
        assert_limit(ended, "OutputLimitExceeded", "output", OUTPUT_LIMIT)
    assert_server_alive(hostile, before)
    assert_serves_normally(client)


SECOND_CONNECTION = """
import socket, struct
greeting = b'\\xff' + b'\\0' * 8 + b'\\x7f' + bytes([3, 0]) + b'NULL'.ljust(20, b'\\0') + b'\\0' * 32
ready = b'\\x05READY\\x0bSocket-Type' + struct.pack('>I', 4) + b'PAIR'
for payload in (b'\\0' * 4096, greeting + bytes([0x04, len(ready)]) + ready + b'\\x02' + struct.pack('>Q', 1 << 62),
                greeting + b'\\x00\\xff' + b'x' * 255):
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect('/.singlecell/socket')
        sock.sendall(payload)
    except OSError:
        pass
    finally:
        sock.close()
print('still here')
"""


def test_junk_on_a_second_connection_to_the_kernels_socket_is_harmless(client: Client, hostile: Server) -> None:
    before = server_pids(hostile)
    ended = outcome(client, SECOND_CONNECTION, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert ended["stdout"] == "still here\n"
    assert_server_alive(hostile, before)
    assert_serves_normally(client)


# Runs of exactly 64 lowercase hex digits (an HMAC key, as the device makes them) in readable
# and writable memory: fast enough for a cell within the time limit.
HEX64 = """
def hex64(data):
    table = bytes(0x78 if chr(i) in '0123456789abcdef' else 0x2e for i in range(256))
    mask, found, at = data.translate(table), set(), 0
    while (at := mask.find(b'x' * 64, at)) != -1:
        end = at + 64
        while end < len(mask) and mask[end] == 0x78:
            end += 1
        if end - at == 64 and (at == 0 or mask[at - 1] != 0x78):
            found.add(bytes(data[at:end]).decode())
        at = end
    return found

def writable_maps(maps):
    for line in maps.splitlines():
        parts = line.split()
        name = parts[5] if len(parts) > 5 else ''
        if parts[1].startswith('rw') and name in ('', '[heap]'):
            start, end = (int(x, 16) for x in parts[0].split('-'))
            if end - start <= 256 << 20:
                yield start, end
"""
OTHER_KEYS = CHANNEL + HEX64 + """
import ctypes
seen = set()
for start, end in writable_maps(open('/proc/self/maps').read()):
    seen |= hex64(ctypes.string_at(start, end - start))
print(json.dumps(sorted(seen - {signer.key.decode()})))
"""


def _hex64_of_process(pid: int) -> set[str]:
    """The 64-hex-digit strings in a process's writable memory (we are root: we may read it)."""
    names: dict[str, object] = {}
    exec(HEX64, names)  # the same search the cell runs
    found: set[str] = set()
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for start, end in names["writable_maps"](Path(f"/proc/{pid}/maps").read_text()):  # type: ignore[operator]
            try:
                mem.seek(start)
                found |= names["hex64"](mem.read(end - start))  # type: ignore[operator]
            except OSError:
                continue
    return found


@pytest.mark.xfail(strict=True, reason="known gap: the template's freed memory still holds keys of kernels it "
                   "forked before, and every later fork copies it. Low severity: messages are attributed by the "
                   "socket they arrive on, and no kernel can reach another's socket")
def test_a_kernel_holds_no_other_kernels_key(client: Client, hostile: Server) -> None:
    """Each kernel's HMAC key is handed "to that child only"; but the template parses every
    fork order (key included) in its own heap, which each later kernel copies."""
    device = server_pids(hostile)["device"]
    ended = outcome(client, OTHER_KEYS, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    keys = _hex64_of_process(device)  # the device knows every live kernel's key (and some past ones)
    assert keys, "no key found in the device's memory: the test would prove nothing"
    leaked = set(printed_json(ended)) & keys
    assert leaked == set(), f"the kernel's memory holds {len(leaked)} keys the device gave other kernels"
    assert_serves_normally(client)
