"""The device's promises for a Jupyter client's kernel, with scripted kernels in its own process
(device/scripted.py): a kernel request becomes a session without a cell; urgent inputs (an
interrupt, input()'s reply, a shutdown) do not wait for the running cell; the cells queued behind
a failed one are aborted; a linked cell's output is its own request's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from device.scripted import Await, Hang, Pause, Say, Script, ScriptedLauncher
from singlecell import protocol
from singlecell.store.base import NewRequest, Status
from tests.unit.test_device import Parts, drive, kinds

JsonDict = dict[str, Any]


def start_kernel(parts: Parts) -> str:
    message = protocol.execute_request("")
    message["metadata"].update(singlecell_kernel=True, singlecell_owner="t:test")
    request_id = protocol.request_id(message)
    parts.store.submit(NewRequest(request_id, message, 5.0), 100)
    return request_id


def ready() -> list[Any]:
    """A kernel's start: it runs no cell, and says idle."""
    return [Say.status("idle")]


def turn(*output: Any, status: str = "ok") -> list[Any]:
    """An execute_request's answer, once the device sent one."""
    return [Await("execute_request"), Say.status("busy"), Say("execute_input", {"code": "", "execution_count": 2}),
            *output, Say.reply(status), Say.status("idle")]


def interrupted() -> list[Any]:
    """A cell that runs until the device interrupts it, and ends with a KeyboardInterrupt."""
    return [Await("execute_request"), Say.status("busy"), Say("execute_input", {"code": ""}), Await("SIGINT"),
            Say.error("KeyboardInterrupt", ""), Say.reply("error"), Say.status("idle")]


def linked_cell(code: str) -> tuple[JsonDict, str]:
    """A linked cell's execute_request, and its id."""
    linked = protocol.execute_request(code)
    linked["metadata"]["singlecell_linked"] = True
    return linked, protocol.request_id(linked)


def idle(msg: JsonDict) -> bool:
    return msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"


def send(parts: Parts, kernel_id: str, msg_type: str, content: JsonDict, channel: str = "shell") -> str:
    message = protocol.message(msg_type, content)
    message["channel"] = channel
    assert parts.store.add_input(kernel_id, message) is not None
    return str(message["header"]["msg_id"])


async def stored(parts: Parts, request_id: str, predicate: Any, within: float = 5.0) -> list[JsonDict]:
    deadline = time.monotonic() + within
    while True:
        messages = [m.message for m in parts.store.get_messages(request_id, 0, 10_000)]
        if any(predicate(m) for m in messages):
            return messages
        assert time.monotonic() < deadline, kinds(messages)
        await asyncio.sleep(0.01)


def answers(messages: list[JsonDict], msg_id: str) -> list[JsonDict]:
    return [m for m in messages if m["parent_header"].get("msg_id") == msg_id]


def is_(msg_type: str, msg_id: str | None = None) -> Any:
    return lambda m: m["msg_type"] == msg_type and (msg_id is None or m["parent_header"].get("msg_id") == msg_id)


def test_a_kernel_request_becomes_a_kernel_session_and_a_shutdown_ends_it(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    launcher = ScriptedLauncher([Script([*ready(), Hang()])], folder=str(parts.folder))

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        record = parts.store.get_request(kernel_id)
        assert record is not None and record.status is Status.DONE and record.session is not None
        assert record.session.kind == "kernel" and record.session.owner == "t:test" and record.session.live
        send(parts, kernel_id, "shutdown_request", {"restart": False}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    record = parts.store.get_request(kernel_id)
    assert record is not None and record.session is not None and record.session.reason == "shutdown"
    messages = [m.message for m in parts.store.get_messages(kernel_id, 0, 100)]
    reply = next(m for m in messages if m["msg_type"] == "shutdown_reply")
    assert reply["channel"] == "control" and reply["content"] == {"status": "ok", "restart": False}
    start = launcher.given[0].received[0][0]
    assert start["metadata"]["singlecell_kernel"] is True and "singlecell_owner" not in start["metadata"]


def test_an_interrupt_reaches_a_busy_kernel_without_waiting_its_turn(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    script = Script([*ready(), *interrupted(), Hang()])
    launcher = ScriptedLauncher([script], folder=str(parts.folder))

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        cell = send(parts, kernel_id, "execute_request", {"code": "while True: pass"})
        await stored(parts, kernel_id, is_("execute_input", cell))
        interrupt = send(parts, kernel_id, "interrupt_request", {}, "control")
        messages = await stored(parts, kernel_id, is_("execute_reply", cell))
        reply = next(m for m in messages if m["msg_type"] == "interrupt_reply")
        assert reply["parent_header"]["msg_id"] == interrupt and reply["channel"] == "control"
        assert messages.index(reply) < messages.index(next(m for m in messages if m["msg_type"] == "error"))
        send(parts, kernel_id, "shutdown_request", {}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    kernel = launcher.given[0]
    assert kernel.interrupts == 1
    assert [m.get("msg_type") for m, _ in kernel.received] == ["execute_request", "execute_request"]


def test_an_input_reply_goes_to_the_kernel_waiting_in_input(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    script = Script([*ready(), Await("execute_request"), Say.status("busy"),
                     Say("input_request", {"prompt": "name? ", "password": False}), Await("input_reply"),
                     Say.stream("stdout", "hello\n"), Say.reply(), Say.status("idle"), Hang()])
    launcher = ScriptedLauncher([script], folder=str(parts.folder))

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        cell = send(parts, kernel_id, "execute_request", {"code": "input('name? ')", "allow_stdin": True})
        await stored(parts, kernel_id, is_("input_request", cell))
        send(parts, kernel_id, "input_reply", {"value": "Ada"}, "stdin")
        messages = await stored(parts, kernel_id, is_("execute_reply", cell))
        assert [m["msg_type"] for m in answers(messages, cell)] == ["status", "input_request", "stream",
                                                                    "execute_reply", "status"]
        send(parts, kernel_id, "input_reply", {"value": "late"}, "stdin")  # no input() waits: dropped
        send(parts, kernel_id, "shutdown_request", {}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    sent = [(m.get("msg_type"), m["content"].get("value")) for m, _ in launcher.given[0].received]
    assert sent == [("execute_request", None), ("execute_request", None), ("input_reply", "Ada")]


def test_the_cells_queued_behind_a_failed_cell_are_aborted_not_run(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    script = Script([*ready(), *turn(Pause(0.2), Say.error("ZeroDivisionError", "division by zero"),
                                     status="error"), Hang()])
    launcher = ScriptedLauncher([script], folder=str(parts.folder))

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        send(parts, kernel_id, "execute_request", {"code": "1/0"})
        queued = [send(parts, kernel_id, "execute_request", {"code": f"print({i})"}) for i in range(2)]
        messages = await stored(parts, kernel_id, is_("execute_reply", queued[1]))
        for msg_id in queued:
            assert [m["content"] for m in answers(messages, msg_id) if m["msg_type"] == "execute_reply"] == [
                {"status": "aborted"}]
        send(parts, kernel_id, "shutdown_request", {}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    # the start and the failed cell: the two queued behind it never reached the kernel
    assert [m.get("msg_type") for m, _ in launcher.given[0].received] == ["execute_request", "execute_request"]


def test_a_linked_cells_output_is_its_own_requests_and_it_ends_with_a_status(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    script = Script([*ready(), *turn(Say.stream("stdout", "linked\n")), Hang()])
    launcher = ScriptedLauncher([script], folder=str(parts.folder))
    linked, linked_id = linked_cell("print('linked')")

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        assert parts.store.submit_linked(NewRequest(linked_id, linked, 5.0), kernel_id, "t:test") is not None
        await stored(parts, linked_id, idle)
        send(parts, kernel_id, "shutdown_request", {}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    record, messages = parts.ended(linked_id)
    assert record.status is Status.DONE and record.linked_to == kernel_id
    assert kinds(messages) == ["status", "execute_input", "stream", "execute_reply", "status"]
    session = [m.message for m in parts.store.get_messages(kernel_id, 0, 100)]
    assert not [m for m in session if m["msg_type"] == "stream"]  # none of it in the session's own stream


def test_an_interrupt_while_a_linked_cell_runs_is_answered_in_the_sessions_own_stream(parts: Parts) -> None:
    kernel_id = start_kernel(parts)
    script = Script([*ready(), *interrupted(), Hang()])
    launcher = ScriptedLauncher([script], folder=str(parts.folder))
    linked, linked_id = linked_cell("while True: pass")

    async def meanwhile() -> None:
        await stored(parts, kernel_id, is_("status"))
        assert parts.store.submit_linked(NewRequest(linked_id, linked, 5.0), kernel_id, "t:test") is not None
        await stored(parts, linked_id, is_("execute_input"))
        interrupt = send(parts, kernel_id, "interrupt_request", {}, "control")
        await stored(parts, kernel_id, is_("interrupt_reply", interrupt))
        await stored(parts, linked_id, idle)
        send(parts, kernel_id, "shutdown_request", {}, "control")

    drive(parts.device(launcher), meanwhile=meanwhile)
    record, messages = parts.ended(linked_id)  # its seqs 1…n, all its own
    assert record.status is Status.ERROR
    assert kinds(messages) == ["status", "execute_input", "error", "execute_reply", "status"]
