"""Quotas: how much one client may use: a request rate, cells at once, and CPU seconds a day.

Whose a request is (its key): ``t:<SHA-256 of its API token, hex>`` with a token, else
``a:<client address>``. The limits are the server's settings (``--rate-limit``,
``--max-running``, ``--cpu-per-day``), which an API token's own limits replace
(``singlecell token create --rate 5/s --max-running 4 --cpu-per-day 600``). The store checks
them in the transaction that stores the request (:meth:`singlecell.store.base.Store.submit`),
so they hold across web processes and hosts; this module has the arithmetic and the words.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

from singlecell.errors import BadRequest, QuotaExceeded
from singlecell.store.base import Quota

DAY = 86400
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
            "d": DAY, "day": DAY}
_RATE = re.compile(r"(\d+(?:\.\d+)?)(?:/(\w+))?")
RATE_FORMAT = "a count per period, like 5/s, 300/min, 1000/h or 20000/day (0: no limit)"


@functools.lru_cache(maxsize=256)  # the server's setting is parsed for every request without a token
def parse_rate(text: str) -> tuple[float, int]:
    """``"300/min"`` → (5.0 per second, bursts of 300): N per period lets N come at once, then
    one every period/N. ``"0"`` or ``""`` → no limit, (0.0, 1). ``BadRequest`` saying the format."""
    text = text.strip().lower().replace(" ", "")
    if text in ("", "0"):
        return 0.0, 1
    match = _RATE.fullmatch(text)
    if match is None or (match.group(2) or "s") not in _PERIODS:
        raise BadRequest(f"a rate is {RATE_FORMAT}, not {text!r}")
    count, period = float(match.group(1)), _PERIODS[match.group(2) or "s"]
    if count <= 0:
        return 0.0, 1
    return count / period, max(1, int(count))


def key_of(token_hash: str, client: str) -> str:
    """The key a request's limits and usage are kept under."""
    return f"t:{token_hash}" if token_hash else f"a:{client}"


def day_of(now: float) -> int:
    """Days since 1970-01-01, UTC: the day a CPU second is counted in."""
    return int(now // DAY)


def pace(tat: float | None, now: float, rate: float, burst: int) -> tuple[float | None, float]:
    """GCRA, the token bucket kept as one timestamp (the theoretical arrival time, ``tat``):
    the new ``tat`` when one more request passes now, else (None, seconds until one would)."""
    interval = 1.0 / rate
    tat = now if tat is None or tat < now else tat
    allowed_at = tat - (burst - 1) * interval
    if allowed_at > now + 1e-9:
        return None, allowed_at - now
    return tat + interval, 0.0


def admit(quota: Quota, count: int, now: float, in_flight: Callable[[], int], used_today: Callable[[], float],
          paced_until: Callable[[], float | None]) -> float | None:
    """Whether ``count`` more requests of ``quota.key`` pass its limits, read through the store's
    callables (only those a limit needs are called): ``QuotaExceeded`` naming the first limit
    passed, else the rate's new pace for the store to write (``None``: no rate). The rate is
    looked at last, so a request another limit refuses does not use it up. The store calls this
    holding the lock under which it then stores the requests."""
    if quota.max_running:
        running = in_flight()
        if running + count > quota.max_running:
            raise too_many(quota, running, count)
    if quota.cpu_per_day:
        used = used_today()
        if used >= quota.cpu_per_day:
            raise out_of_cpu(quota, used, now)
    if not quota.rate:
        return None
    tat, wait = pace(paced_until(), now, quota.rate, quota.burst)
    if tat is None:
        raise too_fast(quota, wait)
    return tat


def _who(key: str) -> str:
    return {"t": "this API token", "u": "this account"}.get(key[:1], "this address (no API token)")


def _rate_text(quota: Quota) -> str:
    per_second = quota.rate
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600), ("day", DAY)):
        count = per_second * seconds
        if count >= 1 and abs(count - round(count)) < 1e-6:
            return f"{round(count)}/{unit}"
    return f"{per_second:g}/s"


def too_fast(quota: Quota, wait: float) -> QuotaExceeded:
    seconds = max(1, math.ceil(wait))
    return QuotaExceeded(f"{_who(quota.key)} may send {_rate_text(quota)} (at most {quota.burst} at once), and it "
                         f"sent more: retry in {seconds} s", "rate", seconds)


def too_many(quota: Quota, running: int, adding: int) -> QuotaExceeded:
    if adding > quota.max_running:
        return QuotaExceeded(f"a batch of {adding} cells is more than the {quota.max_running} {_who(quota.key)} may "
                             f"have queued or running at once (max_running); send at most {quota.max_running}",
                             "max_running", 1)
    cells = f"{running} cell{'' if running == 1 else 's'}"
    return QuotaExceeded(f"{_who(quota.key)} has {cells} queued or running, and may "
                         f"have {quota.max_running} at once (max_running); wait for one to end, or stop one "
                         "(POST /stop/<id>)", "max_running", 1)


def out_of_cpu(quota: Quota, used: float, now: float) -> QuotaExceeded:
    seconds = max(1, math.ceil((day_of(now) + 1) * DAY - now))
    return QuotaExceeded(f"{_who(quota.key)}'s cells used {used:.1f} of its {quota.cpu_per_day:g} CPU seconds of today "
                         f"(cpu_per_day, UTC); it renews at midnight UTC, in {seconds} s", "cpu_per_day", seconds)
