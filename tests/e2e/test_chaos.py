"""Chaos: 500 requests in flight across two web processes and two devices sharing PostgreSQL (or
MongoDB, where SINGLECELL_TEST_MONGODB names a server); one device and one web process are
killed with SIGKILL mid-run.

Every acknowledged request must reach a terminal status; none may run twice (a TCP witness
counts the cells that really ran); the output of each that finished must be complete and in order.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from singlecell.client import Client, ClientError
from tests.e2e.cluster import Witness, cluster
from tests.e2e.test_streaming import texts
from tests.servers import Server

REQUESTS = 500
LINES = 3


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres), "mongodb"])
def test_killing_a_device_and_a_web_process_mid_run_loses_nothing(start_server: Callable[..., Server],
                                                                  backend: str) -> None:
    witness = Witness()
    try:
        with cluster(start_server, backend) as c:
            webs = [c.web(), c.web()]
            devices = [c.device(), c.device()]
            clients = [w.client(timeout=30) for w in webs]
            tokens: dict[str, str] = {}
            for i in range(REQUESTS):
                token = uuid.uuid4().hex
                code = witness.code(token, LINES) + "import time\ntime.sleep(0.1)\n"  # keeps 500 in flight for seconds
                tokens[clients[i % 2].execute(code)] = token  # 202: acknowledged, and so owed an answer

            survivor = clients[1]
            # mid-run: once a fifth have run, kill one device and the other web process
            deadline = time.monotonic() + 120
            while sum(witness.seen.values()) < REQUESTS // 5:
                assert time.monotonic() < deadline, "the cells did not start"
                time.sleep(0.05)
            devices[0].kill()
            webs[0].kill()
            c.devices.remove(devices[0])
            c.webs.remove(webs[0])
            killed_at = sum(witness.seen.values())
            assert killed_at < REQUESTS * 0.9, "everything ran before the kills: nothing was tested"

            statuses: dict[str, str] = {}
            deadline = time.monotonic() + 240
            while len(statuses) < REQUESTS:
                assert time.monotonic() < deadline, f"{REQUESTS - len(statuses)} requests never ended"
                for request_id in tokens:
                    if request_id not in statuses:
                        try:
                            status = survivor.status(request_id)
                        except (ClientError, OSError):
                            continue
                        if status not in ("queued", "running"):
                            statuses[request_id] = status
                time.sleep(0.2)

            counts = Counter(statuses.values())
            odd = {r: survivor.output(r)["messages"][-4:] for r, s in statuses.items() if s not in ("done", "lost")}
            assert set(counts) <= {"done", "lost"}, (counts, odd)
            # only what the killed device held can be lost: at most its 4 kernels' worth
            assert counts["lost"] <= 4, counts
            assert max(witness.seen.values()) == 1, "a cell ran twice"
            for request_id, status in statuses.items():
                token = tokens[request_id]
                if status == "lost":
                    continue
                assert witness.seen[token] == 1, f"{request_id} is done but its cell never ran"
                _check_complete(survivor, request_id, token)
            print(f"\n{dict(counts)}; {killed_at} cells had run when the kills came")
            for client in clients:
                client.close()
    finally:
        witness.close()


def _check_complete(client: Client, request_id: str, token: str) -> None:
    page = client.output(request_id)
    assert page["done"] is True
    seqs = [m["seq"] for m in page["messages"]]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert texts(page["messages"]) == "".join(f"{token} {i}\n" for i in range(LINES))
    kinds = [m["msg"]["msg_type"] for m in page["messages"]]
    assert kinds[0] == "status" and kinds[-1] == "status" and "execute_reply" in kinds
