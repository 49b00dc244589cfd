"""A deployment of several processes on one PostgreSQL database, for the scale-out tests, and a
witness that counts what cells really did.

Cells run with ``--allow-network`` here, so that each can tell the witness (a TCP server of the
test's) that it ran: a request that ran twice shows up twice, whatever the store says.
"""

from __future__ import annotations

import socketserver
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests import mongo, postgres
from tests.servers import Server


class Witness:
    """Counts the tokens cells send it, one line per connection."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        witness = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    with witness.lock:
                        witness.seen[line.decode().strip()] += 1

        socketserver.ThreadingTCPServer.request_queue_size = 256  # many cells call at once
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def code(self, token: str, lines: int = 3) -> str:
        """A cell that tells the witness ``token``, then prints ``lines`` numbered lines."""
        return (f"import socket\nwith socket.create_connection(('127.0.0.1', {self.port})) as s:\n"
                f"    s.sendall(b'{token}\\n')\n"
                f"for i in range({lines}):\n    print('{token}', i, flush=True)\n")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Cluster:
    url: str
    start: Callable[..., Server]
    webs: list[Server] = field(default_factory=list)
    devices: list[Server] = field(default_factory=list)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of the deployment's database, as an outsider reads them."""
        import psycopg

        with psycopg.connect(self.url) as conn:
            return list(conn.execute(sql))

    def flags(self) -> list[str]:
        return ["--db", self.url, "--files", self.url, "--poll-interval", "0.5", "--lease-seconds", "3"]

    def web(self, *flags: str) -> Server:
        server = self.start("web", *self.flags(), *flags)
        self.webs.append(server)
        return server

    def device(self, *flags: str) -> Server:
        server = self.start("device", *self.flags(), "--allow-network", "--kernels", "4", *flags)
        server.wait_for_log(r"device \S+ running")
        self.devices.append(server)
        return server


@contextmanager
def cluster(start: Callable[..., Server], backend: str = "postgresql") -> Iterator[Cluster]:
    """Processes sharing one database of ``backend``: PostgreSQL, or MongoDB where
    SINGLECELL_TEST_MONGODB names a server (mongomock's data cannot cross processes)."""
    if backend == "mongodb":
        mongo.need_server("several processes sharing one database")
    with postgres.database("sc_cluster") if backend == "postgresql" else mongo.database("sc_cluster") as url:
        made = Cluster(url, start)
        try:
            yield made
        finally:  # before the database goes: each must stop cleanly on SIGTERM
            for server in [*made.webs, *made.devices]:
                if server.running:
                    server.stop()
