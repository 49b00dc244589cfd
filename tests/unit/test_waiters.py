"""The web tier's waiters: woken by wake-ups, and by the fallback read when one is lost."""

from __future__ import annotations

import asyncio

from singlecell.web.handlers import Waiters


def test_the_fallback_wakes_only_the_waiters_whose_request_moved_on() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        moved, still, unseen = waiters.register("a"), waiters.register("b"), waiters.register("c")
        waiters.saw("a", ("running", 2, False))
        waiters.saw("b", ("done", 5, True))
        assert sorted(waiters.waited_for()) == ["a", "b", "c"]
        waiters.compare({"a": ("running", 3, False), "b": ("done", 5, True), "c": ("queued", 0, False)})
        assert moved.done() and not still.done() and unseen.done()  # unseen: nothing known, so woken
        assert waiters.waited_for() == ["b"]

    asyncio.run(scenario())


def test_the_oldest_view_of_a_request_is_kept_so_no_waiter_sleeps_through_news() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        old = waiters.register("a")
        waiters.saw("a", ("running", 2, False))
        new = waiters.register("a")
        waiters.saw("a", ("running", 4, False))  # read later: more progress
        waiters.compare({"a": ("running", 4, False)})
        assert old.done() and new.done()  # the first waiter had seen 2: 4 is news to it

    asyncio.run(scenario())


def test_a_wake_up_clears_what_was_seen_and_unregistering_forgets_it() -> None:
    async def scenario() -> None:
        waiters = Waiters()
        first = waiters.register("a")
        waiters.saw("a", ("running", 1, False))
        waiters.notify("a")
        assert first.done() and waiters.waited_for() == []
        second = waiters.register("a")
        waiters.saw("a", ("running", 2, False))
        waiters.unregister("a", second)
        waiters.compare({"a": ("running", 9, False)})
        assert not second.done() and waiters.waited_for() == []

    asyncio.run(scenario())
