"""Where a callback may go (each kind of address), how its URL is checked, and how it is signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress

import pytest

from singlecell.callbacks import GuardedResolver, backoff, check_url, refusal, signature
from singlecell.errors import CallbackRefused
from singlecell.quotas import pace, parse_rate


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("100.64.0.1", "not a public"),  # carrier-grade NAT's shared space
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),  # IPv4 in IPv6 clothes
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("192.0.2.7", "private"),  # documentation ranges are not the internet either
])
def test_every_kind_of_address_a_server_must_not_call_is_refused_by_name(address: str, kind: str) -> None:
    why = refusal(ipaddress.ip_address(address), [])
    assert why is not None and kind in why, why


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_may_be_called(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), []) is None


def test_the_operator_may_allow_addresses_and_networks() -> None:
    allowed = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.1.0.0/16")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.1.200.3"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), allowed) is not None
    assert refusal(ipaddress.ip_address("10.2.0.1"), allowed) is not None
    assert refusal(ipaddress.ip_address("::1"), allowed) is not None  # 127.0.0.1 allows no IPv6


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://example.org/x", "http:// or https://"), ("https:///path", "with a host"), ("example.org/x", "http"),
    ("https://user:pw@example.org/", "user name or password"), ("http://example.org:0/", "port 0"),
    ("http://example.org:99999/", "not a URL"), ("http://[::1/", "not a URL"), ("", "at most 2000"),
    ("https://example.org/" + "a" * 2000, "at most 2000"), (42, "at most 2000"),
])
def test_a_callback_url_that_cannot_be_one_is_refused_saying_why(url: object, words: str) -> None:
    with pytest.raises(CallbackRefused, match=words):
        check_url(url)


def test_a_name_is_refused_for_what_it_resolves_to() -> None:
    async def resolve(host: str, allowed: list[str]) -> object:
        resolver = GuardedResolver(allowed=[ipaddress.ip_network(a) for a in allowed])
        try:
            return await resolver.resolve(host, 80)
        finally:
            resolver.close()

    with pytest.raises(CallbackRefused, match=r"'localhost' resolves to 127\.0\.0\.1, a loopback address"):
        asyncio.run(resolve("localhost", []))
    assert asyncio.run(resolve("localhost", ["127.0.0.0/8", "::1/128"]))
    with pytest.raises(CallbackRefused, match="does not resolve"):
        asyncio.run(resolve("no-such-host.invalid", []))


def test_the_signature_is_the_hmac_of_timestamp_and_body_under_the_tokens_sha256() -> None:
    token = "sc_example-token"
    key = hashlib.sha256(token.encode()).hexdigest()  # what the server keeps, and what a receiver computes
    body = b'{"id": "x", "status": "ok"}'
    expected = hmac.new(key.encode(), b"1764979200." + body, hashlib.sha256).hexdigest()
    assert signature(key, "1764979200", body) == f"sha256={expected}"
    assert signature(key, "1764979201", body) != signature(key, "1764979200", body)


def test_retries_back_off_doubling_up_to_ten_minutes() -> None:
    assert [backoff(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff(30) == 600


def test_rates_read_as_a_count_per_period_with_that_count_as_the_burst() -> None:
    assert parse_rate("5/s") == (5.0, 5)
    assert parse_rate("300/min") == (5.0, 300)
    assert parse_rate("1 / h") == (1 / 3600, 1)
    assert parse_rate("20000/day") == (20000 / 86400, 20000)
    assert parse_rate("0.5") == (0.5, 1)
    assert parse_rate("0") == parse_rate("") == (0.0, 1)
    for bad in ("fast", "5/fortnight", "-1/s", "5/s/s"):
        with pytest.raises(ValueError, match="a rate is a count per period"):
            parse_rate(bad)


def test_the_pace_lets_a_burst_pass_then_one_per_interval() -> None:
    tat = None
    for _ in range(3):  # a burst of 3 at t=100
        tat, wait = pace(tat, 100.0, rate=2.0, burst=3)
        assert tat is not None and wait == 0
    refused, wait = pace(tat, 100.0, rate=2.0, burst=3)
    assert refused is None and wait == pytest.approx(0.5)
    later, wait = pace(tat, 100.5, rate=2.0, burst=3)
    assert later is not None and wait == 0
    idle, _ = pace(later, 1000.0, rate=2.0, burst=3)  # a long pause fills the bucket again, and no more
    assert idle == pytest.approx(1000.5)
