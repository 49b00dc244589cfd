"""Every way a session can end has words for the page."""

from __future__ import annotations

from singlecell.limits import LIMITS
from singlecell.sessions import SESSION_ENDS, duration, end_text


def test_every_limit_that_can_end_a_session_has_its_words() -> None:
    # a session ends for any limit its kernel or its device names, under the limit's key
    assert {limit.key for limit in LIMITS} <= set(SESSION_ENDS)


def test_the_words_fill_in_the_setting() -> None:
    assert end_text("idle", duration(300)) == "Session ended after 5 minutes idle: press Run to start again"
    assert end_text("output", 1000000) == \
        "Session ended: its output passed the limit of 1000000 bytes; press Run to start again"
    assert duration(90) == "90 seconds" and duration(3600) == "1 hour" and duration(1) == "1 second"
