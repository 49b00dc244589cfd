"""``GET /output/<id>?after=N&wait=S`` while a cell runs: output as it comes, resumable, long-polled."""

from __future__ import annotations

import time
from typing import Any

from singlecell.client import Client

PRINT_SLEEP_PRINT = "import time\nprint('first')\ntime.sleep(2)\nprint('second')"


def texts(items: list[dict[str, Any]]) -> str:
    return "".join(i["msg"]["content"]["text"] for i in items if i["msg"]["msg_type"] == "stream")


def read_until(client: Client, request_id: str, predicate: Any, timeout: float = 15.0,
               after: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Long-poll from ``after`` until ``predicate(items so far)``: (items, the last page)."""
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.output(request_id, after=after, wait=1)
        items += page["messages"]
        after = page["next"]
        if predicate(items) or page["done"]:
            return items, page
    raise AssertionError(f"not seen within {timeout} s: {items}")


def test_first_line_is_readable_before_the_cell_is_done(client: Client) -> None:
    started = time.monotonic()
    request_id = client.execute(PRINT_SLEEP_PRINT)
    items, page = read_until(client, request_id, lambda items: "first" in texts(items))
    seen_after = time.monotonic() - started
    assert texts(items) == "first\n"
    assert page["done"] is False
    assert page["status"] == "running"
    assert seen_after < 1.5, f"the first line took {seen_after:.2f} s to arrive"
    rest, last = read_until(client, request_id, lambda _: False, after=page["next"])
    assert last["done"] is True and texts(rest) == "second\n"


def test_resuming_with_after_gives_exactly_the_rest(client: Client) -> None:
    request_id = client.execute(PRINT_SLEEP_PRINT)
    early, page = read_until(client, request_id, lambda items: "first" in texts(items))
    assert page["next"] == early[-1]["seq"]
    rest, last = read_until(client, request_id, lambda _: False, after=page["next"])
    assert last["done"] is True
    everything = client.output(request_id, after=0)["messages"]
    assert early + rest == everything  # no message twice, none missing, same order
    assert [item["seq"] for item in everything] == list(range(1, len(everything) + 1))
    assert texts(early + rest) == "first\nsecond\n"


def test_after_skips_exactly_the_messages_up_to_that_seq(client: Client) -> None:
    request_id = client.execute("print('a')\nprint('b')\n1")
    read_until(client, request_id, lambda _: False)
    everything = client.output(request_id, after=0)["messages"]
    for after in range(len(everything) + 1):
        page = client.output(request_id, after=after)
        assert page["messages"] == everything[after:], f"after={after}"
        assert page["done"] is True
        assert page["next"] == (everything[-1]["seq"] if after < len(everything) else after)


def test_long_poll_returns_as_soon_as_output_arrives(client: Client) -> None:
    request_id = client.execute("import time\ntime.sleep(1)\nprint('late')\ntime.sleep(3)")
    first, page = read_until(client, request_id, lambda items: any(
        i["msg"]["msg_type"] == "execute_input" for i in items))
    assert "late" not in texts(first)
    started = time.monotonic()
    answer = client.output(request_id, after=page["next"], wait=10)
    waited = time.monotonic() - started
    assert texts(answer["messages"]) == "late\n"
    assert answer["done"] is False
    assert waited < 3.0, f"the long-poll held {waited:.2f} s although output came after ~1 s"


def test_long_poll_without_news_returns_after_about_the_wait(client: Client) -> None:
    request_id = client.execute("import time\ntime.sleep(6)")
    _, page = read_until(client, request_id, lambda items: any(
        i["msg"]["msg_type"] == "execute_input" for i in items))
    started = time.monotonic()
    answer = client.output(request_id, after=page["next"], wait=2)
    waited = time.monotonic() - started
    assert answer["messages"] == []
    assert answer["done"] is False
    assert answer["next"] == page["next"]
    assert 1.8 <= waited < 3.5, f"wait=2 held {waited:.2f} s"


def test_long_poll_of_a_finished_request_returns_at_once(client: Client) -> None:
    request_id = client.execute("1")
    items, _ = read_until(client, request_id, lambda _: False)
    started = time.monotonic()
    answer = client.output(request_id, after=items[-1]["seq"], wait=10)
    assert time.monotonic() - started < 1.0
    assert answer["done"] is True and answer["messages"] == []


def test_long_poll_returns_when_the_cell_finishes_without_more_output(client: Client) -> None:
    request_id = client.execute("import time\nprint('x')\ntime.sleep(1)")
    _, page = read_until(client, request_id, lambda items: "x" in texts(items))
    started = time.monotonic()
    while not page["done"]:
        page = client.output(request_id, after=page["next"], wait=10)
    assert time.monotonic() - started < 3.0
    assert page["status"] == "done"
