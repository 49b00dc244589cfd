"""``GET /watch``: one long-poll for many requests (a page's cells), over HTTP."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from singlecell.client import Client
from tests.e2e.test_sessions import SLIDER, Session


def watch(client: Client, ids: dict[str, int], wait: float = 5) -> tuple[int, Any]:
    query = ",".join(f"{i}:{after}" for i, after in ids.items())
    status, _, body = client.request("GET", f"/watch?ids={query}&wait={wait:g}")
    return status, json.loads(body)


def test_a_watch_answers_every_request_with_news_and_waits_for_the_first(client: Client) -> None:
    done = client.execute("print('one')")
    slow = client.execute("import time\ntime.sleep(1.5)\nprint('two')")
    deadline = time.monotonic() + 15
    seen: dict[str, list[dict[str, Any]]] = {done: [], slow: []}
    after = {done: 0, slow: 0}
    while time.monotonic() < deadline and after:
        status, answer = watch(client, after)
        assert status == 200 and answer["missing"] == []
        for request_id, page in answer["requests"].items():
            seen[request_id] += [m["msg"] for m in page["messages"]]
            after[request_id] = page["next"]
            if page["done"]:
                del after[request_id]
    assert after == {}
    texts = {rid: "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
             for rid, msgs in seen.items()}
    assert texts == {done: "one\n", slow: "two\n"}


def test_a_finished_request_is_answered_done_even_with_nothing_new(client: Client) -> None:
    """The page may have read the last messages with a status read before them: a finished
    request it still follows is news, or it would wait for ever."""
    request_id = client.execute("1 + 1")
    last = 0
    for _ in client.messages(request_id):
        last += 1
    status, answer = watch(client, {request_id: last})
    page = answer["requests"][request_id]
    assert status == 200 and page["done"] and page["messages"] == [] and page["next"] == last


def test_a_watch_of_a_live_session_waits_for_its_answers_and_sees_its_end(client: Client) -> None:
    session = Session(client, SLIDER)
    started = time.monotonic()
    status, answer = watch(client, {session.id: session.after}, wait=1)
    assert status == 200 and answer["requests"] == {} and time.monotonic() - started >= 0.9  # live: it waited
    msg_id = session.update({"value": 7})
    status, answer = watch(client, {session.id: session.after}, wait=10)
    page = answer["requests"][session.id]
    assert page["session"]["state"] == "live"
    mine = [m["msg"] for m in page["messages"] if m["msg"]["parent_header"].get("msg_id") == msg_id]
    assert "value 7\n" in [m["content"].get("text") for m in mine]
    client.stop(session.id)
    status, answer = watch(client, {session.id: page["next"]}, wait=10)
    ended = answer["requests"][session.id]
    assert ended["session"]["state"] == "ended" and ended["session"]["reason"] == "stopped"


@pytest.mark.parametrize(("query", "says"), [
    ("", "names no request"),
    ("ids=nothex:0", "is not one"),
    (f"ids={'a' * 32}:x", "is not one"),
    ("ids=" + ",".join(f"{uuid.uuid4().hex}:0" for _ in range(65)), "at most 64"),
])
def test_a_bad_watch_is_a_400_that_says_what_to_fix(client: Client, query: str, says: str) -> None:
    status, _, body = client.request("GET", f"/watch?{query}&wait=0")
    assert status == 400 and says in json.loads(body)["error"]["message"]


def test_an_unknown_id_is_listed_missing_and_the_others_still_answered(client: Client) -> None:
    request_id = client.execute("1 + 1")
    unknown = uuid.uuid4().hex
    status, answer = watch(client, {request_id: 0, unknown: 0})
    assert status == 200 and answer["missing"] == [unknown] and request_id in answer["requests"]
