"""The device's promises, tested in its own process: scripted kernels (device/scripted.py), a real
SQLite store and filestore, no process started.

Every request ends with exactly one terminal status; its messages are stored with the device's
own rising seqs and the request's header as their parent, ``status: idle`` last; what a kernel
may not send is dropped; every limit is named (an error, a ``limit`` extension, a status); stops,
lost leases, and a store that fails while a request ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from device.device import COALESCE, Device
from device.kernel import EXIT_CHANNEL_FAILED, EXIT_SANDBOX_FAILED
from device.scripted import Die, Forge, Hang, Pause, Say, Script, ScriptedLauncher, Step, Write
from filestore.base import FileStore
from filestore.sql import SqlFileStore
from singlecell import protocol
from singlecell.config import Config
from singlecell.errors import StoreUnavailable
from singlecell.limits import BY_KEY, KERNEL_NAMED, LIMITS, Limit
from singlecell.store.base import FileRecord, NewRequest, NewSession, RequestRecord, Status, StoredMessage
from singlecell.store.sql import SqlStore

JsonDict = dict[str, Any]


class Parts:
    """A real store and filestore in a folder of the test's, and the device's settings."""

    def __init__(self, folder: Path, store: SqlStore | None = None, files: FileStore | None = None) -> None:
        self.folder = folder
        self.store = store or SqlStore(f"sqlite:///{folder}/store.db")
        self.store.create_schema()
        self.files = files or SqlFileStore(f"sqlite:///{folder}/files.db")
        self.files.create()
        self.config = Config(data_dir=str(folder), kernels=4, time_limit=5.0, lease_seconds=3.0, poll_interval=0.05,
                             output_limit=1000, memory_limit=256, cpu_limit=7, file_size_limit=5000, disk_limit=9,
                             process_limit=11, open_files_limit=33)

    def submit(self, code: str = "1 + 1", timeout: float = 5.0, inputs: dict[str, bytes] | None = None) -> str:
        message = protocol.execute_request(code)
        request_id = protocol.request_id(message)
        self.store.submit(NewRequest(request_id, message, timeout, inputs or {}), 100)
        return request_id

    def device(self, launcher: ScriptedLauncher, **config: Any) -> Device:
        return Device(self.config.replace(**config), self.store, self.files, launcher, name="test-device")

    def run(self, *scripts: Script, timeout: float = 5.0, **config: Any) -> tuple[str, ScriptedLauncher]:
        """Submit one request, run the device until it has ended, return its id and the launcher."""
        request_id = self.submit(timeout=timeout)
        launcher = ScriptedLauncher(scripts, folder=str(self.folder))
        drive(self.device(launcher, **config))
        return request_id, launcher

    def ended(self, request_id: str) -> tuple[RequestRecord, list[JsonDict]]:
        """The request, which must have ended as a request ends: one terminal status, seqs 1…n,
        every message the request's own, ``status: idle`` last."""
        record = self.store.get_request(request_id)
        assert record is not None and record.status.terminal, record
        stored = self.store.get_messages(request_id, 0, 10_000)
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1)), [m.seq for m in stored]
        assert record.last_seq == len(stored)
        messages = [m.message for m in stored]
        assert all(m["parent_header"] == record.message["header"] for m in messages)
        if record.status is not Status.LOST:
            assert messages[-1]["msg_type"] == "status" and messages[-1]["content"] == {"execution_state": "idle"}
            assert sum(m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in messages) == 1
        return record, messages

    def close(self) -> None:
        self.store.close()
        self.files.close()


def drive(device: Device, within: float = 15.0, meanwhile: Callable[[], Awaitable[None]] | None = None,
          burst: bool = True) -> None:
    """Run the device while ``meanwhile`` does what the test does to it: in burst mode, until the
    queue is empty and every request has ended; else until ``meanwhile`` stops it."""

    async def both() -> None:
        run = asyncio.ensure_future(device.run(burst=burst))
        if meanwhile is not None:
            await meanwhile()
        await run

    asyncio.run(asyncio.wait_for(both(), within))


async def first_output(parts: Parts, request_id: str) -> None:
    while not parts.store.get_messages(request_id):
        await asyncio.sleep(0.01)


def kinds(messages: list[JsonDict]) -> list[str]:
    return [m["msg_type"] for m in messages]


def errors(messages: list[JsonDict]) -> list[JsonDict]:
    return [m["content"] for m in messages if m["msg_type"] == "error"]


def limits(messages: list[JsonDict]) -> list[JsonDict]:
    return [m["content"]["content"] for m in messages
            if m["msg_type"] == "extension" and m["content"]["msg_type"] == "limit"]


# -- the conversation ------------------------------------------------------------------------

def test_a_cell_is_stored_in_order_under_the_devices_seqs_and_the_requests_header(parts: Parts) -> None:
    script = Script.cell(Say.stream("stdout", "hi\n"), Say("display_data", {"data": {"text/plain": "d"}}),
                         Say("execute_result", {"data": {"text/plain": "2"}, "execution_count": 1}))
    request_id, launcher = parts.run(script)
    record, messages = parts.ended(request_id)
    assert record.status is Status.DONE
    assert kinds(messages) == ["status", "execute_input", "stream", "display_data", "execute_result",
                               "execute_reply", "status"]
    (kernel,) = launcher.given
    sent, buffers = kernel.received[0]
    assert sent["header"] == record.message["header"] and sent["content"]["code"] == "1 + 1" and buffers == []
    assert launcher.released == [kernel]


def test_the_kernels_cpu_seconds_are_recorded_with_the_ending_and_charged_to_the_requests_key(parts: Parts) -> None:
    message = protocol.execute_request("1 + 1")
    request_id = protocol.request_id(message)
    parts.store.submit(NewRequest(request_id, message, 5.0, quota_key="t:abc"), 100)
    launcher = ScriptedLauncher([Script(Script.cell().steps, cpu=2.5)], folder=str(parts.folder))
    drive(parts.device(launcher))
    record, _ = parts.ended(request_id)
    assert record.cpu == 2.5 and record.status is Status.DONE
    assert parts.store.cpu_used("t:abc", int(time.time() // 86400)) == 2.5


def test_the_uploads_reach_the_kernel_as_buffers_named_in_the_metadata(parts: Parts) -> None:
    request_id = parts.submit(inputs={"data.txt": b"hello", "sub/helper.py": b"x = 1\n"})
    launcher = ScriptedLauncher([Script.cell()], folder=str(parts.folder))
    drive(parts.device(launcher))
    sent, buffers = launcher.given[0].received[0]
    assert dict(zip(sent["metadata"]["singlecell_inputs"], buffers, strict=True)) == {
        "data.txt": b"hello", "sub/helper.py": b"x = 1\n"}
    assert parts.ended(request_id)[0].status is Status.DONE


def test_an_error_reply_ends_the_request_error(parts: Parts) -> None:
    request_id, _ = parts.run(Script.cell(Say.error("ZeroDivisionError", "division by zero"), status="error"))
    record, messages = parts.ended(request_id)
    assert record.status is Status.ERROR
    assert errors(messages)[0]["ename"] == "ZeroDivisionError" and limits(messages) == []


def test_what_a_kernel_may_not_send_is_dropped_and_its_parent_header_is_never_believed(parts: Parts) -> None:
    other = {"msg_id": "f" * 32, "msg_type": "execute_request"}
    forged_limit = {"msg_type": "limit", "content": {"limit": "time", "value": 1, "ename": "TimeLimitExceeded"}}
    script = Script.cell(Say("extension", forged_limit), Say("extension", {"msg_type": "files", "content": {}}),
                         Say("execute_request", {"code": "1"}), Say("input_request", {"prompt": "x"}),
                         Say("stream", {"name": "stdout", "text": "mine\n"}, parent_header=other))
    request_id, _ = parts.run(script)
    record, messages = parts.ended(request_id)  # every parent header is the request's own
    assert record.status is Status.DONE
    assert kinds(messages) == ["status", "execute_input", "stream", "execute_reply", "status"]


def test_output_is_stored_while_the_cell_still_runs(parts: Parts) -> None:
    request_id = parts.submit()
    script = Script.cell(Say.stream("stdout", "early\n"), Pause(0.5), Say.stream("stdout", "late\n"))
    device = parts.device(ScriptedLauncher([script], folder=str(parts.folder)))
    seen_mid_cell: list[list[str]] = []

    async def watch() -> None:
        await asyncio.sleep(0.3)
        seen_mid_cell.append([m.message["msg_type"] for m in parts.store.get_messages(request_id)])

    drive(device, meanwhile=watch)
    assert seen_mid_cell == [["status", "execute_input", "stream"]]
    assert parts.ended(request_id)[0].status is Status.DONE


def test_the_files_a_cell_wrote_are_collected_and_announced_before_idle(parts: Parts) -> None:
    request_id, _ = parts.run(Script.cell(Write("out.csv", b"a,b\n1,2\n")))
    record, messages = parts.ended(request_id)
    assert record.status is Status.DONE
    assert kinds(messages)[-2:] == ["extension", "status"]
    (announced,) = messages[-2]["content"]["content"]["files"]
    assert announced == {"name": "out.csv", "size": 8, "content_type": "text/csv",
                         "url": f"/files/{request_id}/out.csv"}
    assert parts.files.get(request_id, "out.csv") == b"a,b\n1,2\n"
    assert parts.store.list_files(request_id)[0].name == "out.csv"


# -- limits: ename → status → limit message -----------------------------------------------------

def assert_stopped_by(parts: Parts, request_id: str, limit: Limit, value: float) -> list[JsonDict]:
    record, messages = parts.ended(request_id)
    assert record.status is Status(limit.status)
    assert [e["ename"] for e in errors(messages)] == [limit.ename]
    assert limits(messages) == [{"limit": limit.key, "value": value, "ename": limit.ename,
                                 "evalue": errors(messages)[0]["evalue"]}]
    assert limit.evalue(value) == errors(messages)[0]["evalue"] and str(value).removesuffix(".0") in limit.evalue(value)
    return messages


@pytest.mark.parametrize("limit", list(KERNEL_NAMED.values()), ids=lambda limit: limit.key)
def test_a_limit_the_kernel_names_becomes_the_status_and_a_limit_message(parts: Parts, limit: Limit) -> None:
    value = getattr(parts.config, limit.setting)
    request_id, _ = parts.run(Script.cell(Say.error(limit.ename, limit.evalue(value)), status="error"))
    assert_stopped_by(parts, request_id, limit, value)


def test_the_wall_clock_limit_kills_the_kernel_and_says_so(parts: Parts) -> None:
    request_id, launcher = parts.run(Script([Say.status("busy"), Say.stream("stdout", "working\n"), Hang()]),
                                     timeout=0.2)
    messages = assert_stopped_by(parts, request_id, BY_KEY["time"], 0.2)
    assert launcher.given[0].killed
    assert "working\n" in [m["content"].get("text") for m in messages]  # the output so far is kept


def test_sigxcpu_is_the_cpu_limit(parts: Parts) -> None:
    request_id, _ = parts.run(Script([Say.status("busy"), Die.signal(signal.SIGXCPU)]))
    assert_stopped_by(parts, request_id, BY_KEY["cpu"], 7)


def test_a_kill_by_the_control_groups_oom_killer_is_the_memory_limit(parts: Parts) -> None:
    request_id, _ = parts.run(Script([Say.status("busy"), Die.out_of_memory()]))
    assert_stopped_by(parts, request_id, BY_KEY["memory"], 256)


def test_a_flood_of_output_past_the_hard_cap_is_the_output_limit(parts: Parts) -> None:
    hard_cap = 2 * parts.config.output_limit + (1 << 20)
    request_id, launcher = parts.run(Script([Say.status("busy"), Say("stream", {"name": "stdout", "text": "x"},
                                                                     size=hard_cap + 1), Hang()]))
    assert_stopped_by(parts, request_id, BY_KEY["output"], 1000)
    assert launcher.given[0].killed


def test_every_limit_is_named_by_someone() -> None:
    """The table's limits are each named by the device or the kernel: none can go unreported."""
    assert {limit.named_by for limit in LIMITS} <= {"device", "kernel", "both"}
    device_named = {"time", "cpu", "memory", "output"}  # the ones the tests above see the device name
    assert {limit.key for limit in LIMITS if limit.named_by != "kernel"} == device_named


@pytest.mark.parametrize(("death", "ename", "words"), [
    (Die.signal(signal.SIGKILL), "KernelDied", "SIGKILL"),
    (Die.signal(signal.SIGSEGV), "KernelDied", "SIGSEGV"),
    (Die.code(3), "KernelDied", "exited with code 3"),
    (Die.code(EXIT_SANDBOX_FAILED), "SandboxError", "sandbox could not be set up"),
    (Die.code(EXIT_CHANNEL_FAILED), "KernelDied", "could not reach the device"),
    (Die(-1), "KernelDied", "lost with its template"),
], ids=["sigkill", "sigsegv", "code-3", "sandbox", "channel", "template-lost"])
def test_a_kernel_that_dies_fails_its_request_saying_how(parts: Parts, death: Die, ename: str, words: str) -> None:
    request_id, _ = parts.run(Script([Say.status("busy"), Say.stream("stdout", "before\n"), death]))
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED
    assert [e["ename"] for e in errors(messages)] == [ename] and words in errors(messages)[0]["evalue"]
    assert limits(messages) == []


def test_a_message_not_signed_with_the_kernels_key_stops_the_cell(parts: Parts) -> None:
    request_id, launcher = parts.run(Script([Say.status("busy"), Forge(), Say.stream("stdout", "after\n"), Hang()]))
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED
    assert [e["ename"] for e in errors(messages)] == ["KernelProtocolError"]
    assert launcher.given[0].killed


# -- stops, leases, shutdown -------------------------------------------------------------------

def test_a_stop_kills_the_kernel_and_ends_the_request_aborted(parts: Parts) -> None:
    request_id = parts.submit()
    launcher = ScriptedLauncher([Script([Say.status("busy"), Say.stream("stdout", "go\n"), Hang()])],
                                folder=str(parts.folder))
    device = parts.device(launcher)

    async def stop_it() -> None:
        await first_output(parts, request_id)
        assert parts.store.request_stop(request_id, []) is Status.RUNNING  # read within a poll interval

    drive(device, meanwhile=stop_it)
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED
    assert [e["ename"] for e in errors(messages)] == ["CellStopped"]
    assert launcher.given[0].killed


def test_a_request_declared_lost_mid_cell_is_left_lost_and_its_kernel_killed(parts: Parts) -> None:
    request_id = parts.submit()
    script = Script.cell(Say.stream("stdout", "a\n"), Pause(0.3), Say.stream("stdout", "b\n"), Pause(5))
    launcher = ScriptedLauncher([script], folder=str(parts.folder))
    device = parts.device(launcher)

    async def lose_it() -> None:
        await asyncio.sleep(0.15)  # "a" is stored; the lease is not renewed before it runs out
        assert parts.store.expire_leases(time.time() + 1000) == [request_id]

    drive(device, meanwhile=lose_it)
    record, messages = parts.ended(request_id)
    assert record.status is Status.LOST
    assert kinds(messages) == ["status", "execute_input", "stream", "error"]  # "b" was not stored
    assert errors(messages)[0]["ename"] == "DeviceLost"
    assert launcher.given[0].killed


def test_a_device_stopped_while_a_cell_runs_ends_it_aborted(parts: Parts) -> None:
    request_id = parts.submit()
    device = parts.device(ScriptedLauncher([Script([Say.status("busy"), Hang()])], folder=str(parts.folder)))

    async def shut_down() -> None:
        await first_output(parts, request_id)
        await device.stop(grace=0.05)  # the burst run ends: the request ended

    drive(device, meanwhile=shut_down)
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED and errors(messages)[0]["ename"] == "ServerStopped"


# -- when ending a request fails (defect 6 of issue 10) -------------------------------------------

class RefusingStore(SqlStore):
    """A real SQLite store whose ``finish`` fails the first ``refusals`` times (a database that
    is restarting), as a store does: the transaction raises, nothing is written."""

    def __init__(self, url: str, refusals: int) -> None:
        super().__init__(url)
        self.refusals = refusals
        self.finishes: list[Status] = []

    def finish(self, request_id: str, device: str, status: Status, messages: Sequence[StoredMessage] = (),
               files: Sequence[FileRecord] = (), session: NewSession | None = None, cpu: float | None = None) -> bool:
        self.finishes.append(status)
        if self.refusals > 0:
            self.refusals -= 1
            raise OSError("the database is restarting")
        return super().finish(request_id, device, status, messages, files, session, cpu)


def test_a_finish_the_store_refused_is_tried_again_and_logged(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    parts = Parts(tmp_path, store=RefusingStore(f"sqlite:///{tmp_path}/store.db", refusals=2))
    try:
        with caplog.at_level(logging.ERROR, logger="device.device"):
            request_id, _ = parts.run(Script.cell(Say.stream("stdout", "kept\n")))
            device_log = caplog.text
        record, messages = parts.ended(request_id)
        assert record.status is Status.DONE and "kept\n" in [m["content"].get("text") for m in messages]
        assert device_log.count("storing its ending failed (OSError: the database is restarting)") == 2
    finally:
        parts.close()


def test_a_store_that_keeps_refusing_the_ending_leaves_the_request_to_end_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, the failure was swallowed without a log line, and the lease keeper renewed the
    request for ever: it stayed ``running``. Now the device gives up on it (logging why), leaves
    it out of its renewals, and its lease runs out: it ends ``lost``, readable by its client."""
    store = RefusingStore(f"sqlite:///{tmp_path}/store.db", refusals=10**6)
    parts = Parts(tmp_path, store=store)
    try:
        request_id = parts.submit()
        device = parts.device(ScriptedLauncher([Script.cell()], folder=str(parts.folder)), lease_seconds=0.3)
        device.finish_retries = (0.01, 0.01)

        async def until_lost() -> None:
            while (record := store.get_request(request_id)) is not None and not record.status.terminal:
                await asyncio.sleep(0.02)  # the device gave up on it; its lease runs out
            await device.stop(0)

        with caplog.at_level(logging.ERROR, logger="device.device"):
            drive(device, meanwhile=until_lost, burst=False)  # its lease keeper must go on
        record, messages = parts.ended(request_id)
        assert record.status is Status.LOST and errors(messages)[-1]["ename"] == "DeviceLost"
        assert store.finishes == [Status.DONE] * 3 + [Status.ABORTED] * 3  # the ending, then the smallest one
        assert "the store refused every ending; it is no longer renewed" in caplog.text
    finally:
        parts.close()


class UnreachableStore(SqlStore):
    """A real SQLite store whose ``claim`` fails the first ``refusals`` times (a database that
    is restarting, or unreachable for a while)."""

    def __init__(self, url: str, refusals: int) -> None:
        super().__init__(url)
        self.refusals = refusals

    def claim(self, device: str, limit: int, lease_seconds: float) -> list[RequestRecord]:
        if self.refusals > 0:
            self.refusals -= 1
            raise StoreUnavailable("the database is unreachable")
        return super().claim(device, limit, lease_seconds)


def test_a_device_whose_claims_fail_keeps_running_and_claims_once_the_store_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, one failed claim ended the device's loop, and with it the device."""
    parts = Parts(tmp_path, store=UnreachableStore(f"sqlite:///{tmp_path}/store.db", refusals=3))
    try:
        with caplog.at_level(logging.WARNING, logger="device.device"):
            request_id, _ = parts.run(Script.cell(Say.stream("stdout", "ran\n")))
        record, messages = parts.ended(request_id)
        assert record.status is Status.DONE and "ran\n" in [m["content"].get("text") for m in messages]
        # one line when the failures begin, one when they end: not one per poll
        assert caplog.text.count("claiming queued requests failed (1 in a row): the database is unreachable") == 1
        assert caplog.text.count("claiming queued requests failed") == 1
        assert "claims work again, after 3 failed" in caplog.text
    finally:
        parts.close()


class BrokenFileStore(SqlFileStore):
    def put(self, request_id: str, name: str, data: bytes) -> str:
        raise RuntimeError("the file server is gone")


def test_a_failure_while_collecting_the_ending_ends_the_request_with_a_server_error(tmp_path: Path) -> None:
    parts = Parts(tmp_path, files=BrokenFileStore(f"sqlite:///{tmp_path}/files.db"))
    try:
        request_id, _ = parts.run(Script.cell(Say.stream("stdout", "kept\n"), Write("out.txt", b"x")))
        record, messages = parts.ended(request_id)
        assert record.status is Status.ABORTED
        assert "kept\n" in [m["content"].get("text") for m in messages]  # the output so far
        assert [e["ename"] for e in errors(messages)] == ["ServerError"]
        assert "RuntimeError" in errors(messages)[0]["evalue"]
    finally:
        parts.close()


def test_a_message_nested_too_deep_to_walk_is_a_protocol_error(parts: Parts) -> None:
    """Walking it would hit the recursion limit: once, that left the request ``running`` for ever."""
    nested: JsonDict = {}
    deepest = nested
    for _ in range(5000):
        deepest["x"] = {}
        deepest = deepest["x"]
    request_id, launcher = parts.run(Script([Say.status("busy"), Say("display_data", {"data": nested}), Hang()]))
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED
    assert [e["ename"] for e in errors(messages)] == ["KernelProtocolError"]
    assert "nested deeper than 100 levels" in errors(messages)[0]["evalue"]
    assert launcher.given[0].killed


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("a bug in the device")


def test_anything_the_device_fails_on_while_a_cell_runs_ends_it_with_a_server_error(parts: Parts) -> None:
    """No kernel can send this (its messages arrive as JSON): it stands for a bug of the device's,
    which must still end the request rather than leave it ``running``."""
    request_id, launcher = parts.run(Script([Say.status("busy"), Say("display_data", {Unprintable(): 1}), Hang()]))
    record, messages = parts.ended(request_id)
    assert record.status is Status.ABORTED
    assert [e["ename"] for e in errors(messages)] == ["ServerError"]
    assert "while this cell ran (RuntimeError)" in errors(messages)[0]["evalue"]
    assert launcher.given[0].killed


def test_no_message_is_lost_when_the_coalescing_window_ends_as_it_arrives(parts: Parts) -> None:
    """The device waits for a kernel's next message at most until its coalescing window ends.
    A message that arrives just as the window ends must not be dropped with the wait: a receive
    that took it off the socket must still hand it over. Hundreds of messages, each at a random
    moment around the window's end."""
    rng = random.Random(7)
    steps: list[Step] = []
    for i in range(300):
        steps += [Say.stream("stdout", f"{i}\n"), Pause(rng.uniform(0.0, 2 * COALESCE))]
    request_id, _ = parts.run(Script.cell(*steps), timeout=30)
    record, messages = parts.ended(request_id)
    assert record.status is Status.DONE
    printed = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream").split()
    assert printed == [str(i) for i in range(300)]
