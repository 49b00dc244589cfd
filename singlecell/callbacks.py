"""Callbacks: a finished request's ``/eval`` summary, POSTed to the ``callback_url`` its client gave.

A request submitted with a ``callback_url`` (``POST /execute``, ``POST /batch``) gets a callback
in the store, in the transaction that stores the request. Every web process runs a
:class:`CallbackSender`: it claims the callbacks of requests that ended (the store hands each to
one process, for a while), POSTs each summary, and records how that went; a failure is tried
again with back-off (1 s, 2 s, 4 s, … at most 10 minutes apart) until ``--callback-attempts``.
So a callback survives the web process that took the request, and the one that first tried it.

The body is signed: ``X-Singlecell-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<X-Singlecell-Timestamp>.<body>`` under the SHA-256 (hex) of the API token that submitted the
request, the token's secret as the server keeps it. A receiver computes the same from its own
token, and refuses an old timestamp. Requests without a token are sent unsigned.

Server-side request forgery: a callback goes only to public addresses. The host is resolved, and
every address it has must be global (not loopback, private, link-local, where clouds keep their
metadata service, shared, multicast or reserved); the connection then goes to those very
addresses (no second lookup a DNS rebinding could change), and each redirect is checked the same
way. ``--callback-allow`` names the addresses and networks the operator lets through anyway.
The URL is checked when the request is submitted (a clear 400) and again at every attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import tornado.netutil
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.simple_httpclient import SimpleAsyncHTTPClient

from singlecell import __version__
from singlecell.errors import CallbackRefused
from singlecell.metrics import Metrics
from singlecell.store.base import CallbackState, Store
from singlecell.summary import summarize

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL = 2000
CLAIM_EVERY = 1.0  # seconds between a sender's looks for callbacks to make
CLAIM_AT_ONCE = 16
HOLD_SECONDS = 60.0  # a claim lasts this long: longer than an attempt, redirects included
CONNECT_TIMEOUT, REQUEST_TIMEOUT = 5.0, 15.0
MAX_BACKOFF = 600.0
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "168.63.129.16"))


def check_url(url: object) -> str:
    """A ``callback_url`` as given, if it can be one: http(s), a host, no user name or password."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise CallbackRefused(f"\"callback_url\" is an http:// or https:// URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"\"callback_url\" is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("\"callback_url\" must be an http:// or https:// URL with a host, like "
                              "https://example.org/hooks/singlecell")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("\"callback_url\" may not hold a user name or password: the body is signed instead")
    if port == 0:
        raise CallbackRefused("\"callback_url\" has port 0, which nothing listens on")
    return url


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why a callback may not go to ``address`` (words naming its kind); None when it may."""
    if any(address in network for network in allowed if network.version == address.version):
        return None
    mapped = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    if mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
        return refusal(mapped, allowed)
    if address in METADATA:
        return f"{address}, a cloud metadata address"
    for kind, words in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                        ("is_unspecified", "the unspecified address"), ("is_multicast", "a multicast address"),
                        ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(address, kind):
            return f"{address}, {words}"
    if not address.is_global:
        return f"{address}, not a public address"
    return None


class GuardedResolver(tornado.netutil.Resolver):
    """A resolver that refuses hosts with any address a callback may not reach; the HTTP client
    connects to the addresses it returns, so what was checked is what is reached."""

    def initialize(self, allowed: Sequence[Network] = ()) -> None:
        self.allowed = list(allowed)
        self.inner = tornado.netutil.DefaultLoopResolver()

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC) -> list[tuple[int, Any]]:
        try:
            found = await self.inner.resolve(host, port, family)
        except OSError as exc:
            raise CallbackRefused(f"the callback's host {host!r} does not resolve ({exc})") from None
        for _, sockaddr in found:
            why = refusal(ipaddress.ip_address(sockaddr[0].split("%")[0]), self.allowed)
            if why is not None:
                raise CallbackRefused(f"callbacks go only to public addresses, and {host!r} resolves to {why} "
                                      "(the operator may allow it with --callback-allow)")
        return found

    def close(self) -> None:
        self.inner.close()


async def check_destination(url: str, resolver: GuardedResolver) -> None:
    """Refuse (``CallbackRefused``) a URL whose host resolves to an address callbacks may not reach."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    await resolver.resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Singlecell-Signature``'s value: ``sha256=`` and the hex HMAC-SHA256 of
    ``<timestamp>.<body>`` under ``secret`` (the SHA-256, hex, of the API token)."""
    digest = hmac.new(secret.encode("ascii"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def backoff(attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1))


class CallbackSender:
    """Makes the callbacks of ended requests, for any web process of the deployment."""

    def __init__(self, store: Store, allowed: Sequence[Network], attempts: int, metrics: Metrics | None = None) -> None:
        self.store = store
        self.attempts = attempts
        self.metrics = metrics
        self.resolver = GuardedResolver(allowed=allowed)
        self.client = SimpleAsyncHTTPClient(force_instance=True, resolver=self.resolver, max_clients=CLAIM_AT_ONCE,
                                            max_body_size=64 * 1024)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self.run())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.client.close()

    async def run(self) -> None:
        while True:
            try:
                await self.send_due()
            except Exception:
                log.exception("making callbacks failed; trying again")
            await asyncio.sleep(CLAIM_EVERY)

    async def send_due(self) -> int:
        """Claim the callbacks due now and make them; returns how many were tried."""
        claimed = self.store.claim_callbacks(CLAIM_AT_ONCE, HOLD_SECONDS)
        if claimed:
            await asyncio.gather(*(self.send(callback) for callback in claimed))
        return len(claimed)

    async def send(self, callback: CallbackState) -> None:
        record = self.store.get_request(callback.request_id)
        if record is None:  # deleted since: nothing to say
            self.store.callback_tried(callback.request_id, False, "the request no longer exists")
            return
        messages = [m.message for m in self.store.get_messages(record.id, 0, 1_000_000)]
        body = json.dumps(summarize(record.id, record.status, messages, base_url=callback.base_url)).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": f"singlecell/{__version__} (callbacks)",
                   "X-Singlecell-Request": record.id, "X-Singlecell-Attempt": str(callback.attempts),
                   "X-Singlecell-Timestamp": timestamp}
        if callback.secret:
            headers["X-Singlecell-Signature"] = signature(callback.secret, timestamp, body)
        request = HTTPRequest(callback.url, method="POST", body=body, headers=headers, follow_redirects=True,
                              max_redirects=3, connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT,
                              validate_cert=True, decompress_response=False)
        code = 599
        error: BaseException | None
        try:
            # raise_error=False turns only HTTP statuses into answers: a refused address, a refused
            # connection or a timeout still raise
            response: HTTPResponse = await self.client.fetch(request, raise_error=False)
            code, error = response.code, response.error
        except Exception as exc:
            error = exc
        if error is None and 200 <= code < 300:
            self.store.callback_tried(record.id, True)
            self._count("delivered")
            return
        refused = isinstance(error, CallbackRefused)
        words = error.message if isinstance(error, CallbackRefused) else \
            f"HTTP {code}" if code != 599 else f"{type(error).__name__}: {error}"
        if refused or callback.attempts >= self.attempts:
            log.warning("callback of request %s to %s failed for good after %d attempt(s): %s", record.id,
                        callback.url, callback.attempts, words)
            self.store.callback_tried(record.id, False, words)
            self._count("refused" if refused else "failed")
            return
        self.store.callback_tried(record.id, False, words, time.time() + backoff(callback.attempts))
        self._count("retried")

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.callbacks.labels(outcome).inc()
