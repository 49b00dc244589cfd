"""Attacks over the network: the server's own port, the databases and brokers on this host
(their TCP ports and Unix sockets), the device's wake-up sockets, and a service another kernel
runs on its loopback. Nothing but 127.0.0.1 and local sockets is ever tried."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator

import pytest

from singlecell.client import Client
from tests.security.hostile import (
    ENDED_WITHIN,
    assert_serves_normally,
    follow,
    printed_json,
    read_stdout_until,
    require_layers,
)
from tests.servers import Server, outcome

SERVICES = {"postgresql": 5432, "mariadb": 3306, "redis": 6379, "rabbitmq": 5672, "mosquitto": 1883, "nats": 4222}
UNIX_SOCKETS = ("/var/run/postgresql/.s.PGSQL.5432", "/run/postgresql/.s.PGSQL.5432", "/tmp/.s.PGSQL.5432",
                "/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/run/redis/redis-server.sock",
                "/var/run/redis/redis-server.sock")

#: every attack here runs twice: as a one-shot cell, and in a Jupyter client's kernel
THROUGH_KERNELS = True


def reachable(family: int, address: object) -> bool:
    """Whether we (outside any sandbox) can connect: else a refused connection proves nothing."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(address)  # type: ignore[arg-type]
        except OSError:
            return False
    return True


CONNECT = """
import errno, json, socket
results = {{}}
for family, address in {targets!r}:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        key = str(address)
        try:
            sock.connect(tuple(address) if isinstance(address, list) else address)
            results[key] = 'connected'
        except socket.timeout:
            results[key] = 'timeout'
        except OSError as exc:
            results[key] = errno.errorcode.get(exc.errno, str(exc))
print(json.dumps(results))
"""


def assert_none_connects(client: Client, targets: list[tuple[int, object]]) -> None:
    plain = [(int(family), address) for family, address in targets]  # enums do not repr as Python
    ended = outcome(client, CONNECT.format(targets=plain), deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    results = printed_json(ended)
    assert len(results) == len(targets)
    assert [key for key, result in results.items() if result == "connected"] == [], results


@pytest.mark.parametrize("service", ["singlecell", *SERVICES])
def test_a_local_tcp_service_is_unreachable(client: Client, hostile: Server, active_layers: set[str],
                                            service: str) -> None:
    require_layers(active_layers, "network")
    port = hostile.port if service == "singlecell" else SERVICES[service]
    targets: list[tuple[int, object]] = [(family, address) for family, address in
                                         ((socket.AF_INET, ("127.0.0.1", port)), (socket.AF_INET6, ("::1", port)))
                                         if reachable(family, address)]
    if not targets:
        pytest.skip(f"{service} does not listen on 127.0.0.1:{port} here")
    assert_none_connects(client, targets)
    assert_serves_normally(client)


def test_the_local_databases_unix_sockets_are_unreachable(client: Client, active_layers: set[str]) -> None:
    require_layers(active_layers, "filesystem")
    paths = [p for p in UNIX_SOCKETS if os.path.exists(p) and reachable(socket.AF_UNIX, p)]
    if not paths:
        pytest.skip("no database listens on a Unix socket here")
    assert_none_connects(client, [(socket.AF_UNIX, p) for p in paths])
    assert_serves_normally(client)


def test_the_devices_wake_up_sockets_are_unreachable(client: Client, hostile: Server,
                                                      active_layers: set[str]) -> None:
    """Abstract Unix sockets belong to the network namespace: a cell in its own cannot wake, or
    flood, the device and the web tier."""
    require_layers(active_layers, "network")
    tag = hashlib.sha256(str(hostile.data_dir).encode()).hexdigest()[:20]
    names = [f"\0singlecell-{tag}-{kind}" for kind in ("queued", "progress")]
    assert all(reachable(socket.AF_UNIX, name) for name in names), "the device's wake-up sockets are not there"
    assert_none_connects(client, [(socket.AF_UNIX, name) for name in names])
    ended = outcome(client, "print(open('/proc/net/unix').read())", deadline=ENDED_WITHIN)
    assert f"@singlecell-{tag}" not in ended["stdout"], "the cell sees the server's abstract sockets"
    assert_serves_normally(client)


@pytest.fixture
def victim_listening(second_client: Client) -> Iterator[str]:
    """Another kernel, serving TCP on its loopback and an abstract socket, for 2 s."""
    request_id = second_client.execute(
        "import socket\nserver = socket.create_server(('127.0.0.1', 47011))\n"
        "hidden = socket.socket(socket.AF_UNIX)\nhidden.bind('\\0sc-victim-secret')\nhidden.listen()\n"
        "server.settimeout(2.5)\nprint('listening', flush=True)\n"
        "try:\n    server.accept()\n    print('someone came')\nexcept OSError:\n    print('no one came')")
    read_stdout_until(second_client, request_id, "listening")
    yield request_id
    with contextlib.suppress(AssertionError):
        follow(second_client, request_id)


def test_another_kernels_loopback_services_are_unreachable(client: Client, second_client: Client,
                                                           victim_listening: str, active_layers: set[str]) -> None:
    require_layers(active_layers, "network")
    assert_none_connects(client, [(socket.AF_INET, ("127.0.0.1", 47011)), (socket.AF_UNIX, "\0sc-victim-secret")])
    victim = follow(second_client, victim_listening)
    assert victim["status"] == "done" and victim["stdout"] == "listening\nno one came\n", victim
    assert_serves_normally(client)


NETWORK = """
import errno, json, os, socket
seen = {'interfaces': [name for _, name in socket.if_nameindex()]}
for name, args in (('packet', (socket.AF_PACKET, socket.SOCK_RAW, 0x0300)),
                   ('raw', (socket.AF_INET, socket.SOCK_RAW, 1))):
    try:
        socket.socket(*args).close()
        seen[name] = 'opened'
    except OSError as exc:
        seen[name] = errno.errorcode[exc.errno]
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a route anywhere but loopback?
    try:
        sock.connect(('192.0.2.1', 9))  # TEST-NET-1: nothing is sent, a UDP connect only picks a route
        seen['route'] = sock.getsockname()[0]
    except OSError as exc:
        seen['route'] = errno.errorcode[exc.errno]
print(json.dumps(seen))
"""


def test_the_cell_has_only_its_own_loopback_and_no_raw_sockets(client: Client, active_layers: set[str]) -> None:
    require_layers(active_layers, "network")
    ended = outcome(client, NETWORK, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert printed_json(ended) == {"interfaces": ["lo"], "packet": "EPERM", "raw": "EPERM", "route": "ENETUNREACH"}
    assert_serves_normally(client)

