"""Attacks on the host's resources: fork and thread bombs, memory bombs, filling the disk,
runaway output, loops that never end. Each is stopped by its limit, which names itself (an
``error`` and a ``limit`` extension), leaves nothing running, and the next request is normal."""

from __future__ import annotations

import time

import pytest

from singlecell.client import Client
from tests.security.hostile import (
    DISK_LIMIT,
    ENDED_WITHIN,
    FILE_SIZE_LIMIT,
    MEMORY_LIMIT,
    OPEN_FILES_LIMIT,
    OUTPUT_LIMIT,
    PROCESS_LIMIT,
    TIME_LIMIT,
    assert_limit,
    assert_nothing_left,
    assert_serves_normally,
    follow,
    printed_json,
    read_stdout_until,
    require_layers,
    running_as,
    tmp_skeleton,
)
from tests.servers import Server, outcome

# -- processes -----------------------------------------------------------------------------

FORK_BOMB = """
import os, time
print(os.getuid(), flush=True)
while True:
    pid = os.fork()  # in the kernel itself: fails once the cell runs its limit of processes
    if pid == 0:  # every child forks for ever too, and never returns to the kernel's code
        while True:
            try:
                os.fork()
            except BaseException:
                time.sleep(0.01)
"""

THREAD_BOMB = """
import os, threading, time
print(os.getuid(), flush=True)
while True:
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
"""


@pytest.mark.parametrize("code", [FORK_BOMB, THREAD_BOMB], ids=["fork-bomb", "thread-bomb"])
def test_a_process_bomb_is_stopped_by_the_process_limit_and_leaves_nothing(client: Client, hostile: Server,
                                                                          active_layers: set[str], code: str) -> None:
    require_layers(active_layers, "identity")  # RLIMIT_NPROC counts a uid: it needs one per kernel
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    uid = int(ended["stdout"].split()[0])
    assert_nothing_left(hostile, uid)
    assert_limit(ended, "ProcessLimitExceeded", "processes", PROCESS_LIMIT)
    assert_serves_normally(client)


SHELL_FORK_BOMB = """
import os, subprocess, time
print(os.getuid(), flush=True)
subprocess.run(['bash', '-c', 'bomb() { bomb | bomb & }; bomb'], stderr=subprocess.DEVNULL)
time.sleep(2)  # the bomb goes on in the background, detached from the shell that lit it
"""


def test_a_shell_fork_bomb_stays_within_the_process_limit_and_leaves_nothing(client: Client, hostile: Server,
                                                                            active_layers: set[str]) -> None:
    require_layers(active_layers, "identity")
    request_id = client.execute(SHELL_FORK_BOMB)
    uid = int(read_stdout_until(client, request_id, "\n").split()[0])
    most = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # counted from the host, while the bomb goes off
        most = max(most, len(running_as(hostile, uid)))
        time.sleep(0.05)
    ended = follow(client, request_id)
    assert ended["status"] in ("done", "timeout"), ended["error"]  # a starved cell may not finish in time
    assert_nothing_left(hostile, uid)
    # RLIMIT_NPROC: the limit plus the kernel's own threads; its pids group allows 16 more tasks
    assert 8 <= most <= PROCESS_LIMIT + 16, f"{most} processes of the cell at once"
    assert_serves_normally(client)


# -- memory ----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [
    "x = bytearray(1 << 30)",
    "x = 'x' * (1 << 30)",
    "import numpy\nx = numpy.ones(1 << 28)",
    "x = []\nwhile True:\n    x.append(bytearray(1 << 20))",
], ids=["bytearray", "str", "numpy", "growing-list"])
def test_a_memory_bomb_is_stopped_by_the_memory_limit(client: Client, code: str) -> None:
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert_limit(ended, "MemoryLimitExceeded", "memory", MEMORY_LIMIT)
    assert_serves_normally(client)


SPLIT_MEMORY = """
import json, subprocess, sys
HOLD = "import time; b = b'x' * (150 << 20); print('held', flush=True); time.sleep(30)"
children = [subprocess.Popen([sys.executable, '-c', HOLD], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for _ in range(4)]
held = [c.stdout.readline().strip() == b'held' for c in children]
resident = 0
for c in children:
    try:
        with open(f'/proc/{c.pid}/status') as fh:
            resident += sum(int(line.split()[1]) for line in fh if line.startswith('VmRSS:')) * 1024
    except OSError:
        pass
for c in children:
    c.kill()
print(json.dumps({"held": sum(held), "resident_mb": resident >> 20}))
"""
KERNEL_AND_CHILD = """
import json, subprocess, sys
mine = b'x' * (170 << 20)  # in the kernel itself: within its own address-space limit
child = subprocess.run([sys.executable, '-c', "import time; b = b'x' * (150 << 20); time.sleep(1)"])
print(json.dumps({"held": 2, "resident_mb": 170 + (150 if child.returncode == 0 else 0)}))
"""


@pytest.mark.parametrize("code", [SPLIT_MEMORY, KERNEL_AND_CHILD], ids=["four-children", "kernel-and-a-child"])
def test_memory_split_across_processes_stays_within_the_memory_limit(client: Client, code: str) -> None:
    """The memory limit is the cell's, not each process's: 4 children of 150 MB each, or the
    kernel and a child together, hold no more than it at once (else --process-limit processes
    could each take --memory-limit); when the kernel itself is the one stopped, it says why."""
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    if ended["status"] == "done":
        seen = printed_json(ended)
        assert seen["resident_mb"] <= MEMORY_LIMIT + 64, (
            f"the cell held {seen['resident_mb']} MB at once in {seen['held']} processes, with a "
            f"memory limit of {MEMORY_LIMIT} MB")
    else:
        assert_limit(ended, "MemoryLimitExceeded", "memory", MEMORY_LIMIT)
    assert_serves_normally(client)


# -- disk ------------------------------------------------------------------------------------

FILL = """
i = 0
while True:  # files under the file size limit, until the disk quota is full
    with open(f'{folder}/fill{{i}}.bin', 'wb') as fh:
        fh.write(b'x' * 900_000)
    i += 1
"""
MANY_FILES = """
for i in range(100_000):  # empty files: the quota counts inodes too
    open(f'e{i}', 'w').close()
"""
FRESH = """
import json, os
free = os.statvfs('/cell').f_bavail * os.statvfs('/cell').f_frsize
print(json.dumps({"cell": os.listdir('/cell'), "tmp": os.listdir('/tmp'), "shm": os.listdir('/dev/shm'),
                  "free_mb": free >> 20}))
"""


@pytest.mark.parametrize("code", [FILL.format(folder="/cell"), FILL.format(folder="/tmp"), MANY_FILES,
                                  FILL.format(folder="/dev/shm")], ids=["folder", "tmp", "inodes", "dev-shm"])
def test_filling_the_disk_is_stopped_by_the_disk_limit(client: Client, active_layers: set[str], code: str) -> None:
    require_layers(active_layers, "identity", "filesystem")  # the quota is a tmpfs made as root
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert_limit(ended, "DiskLimitExceeded", "disk", DISK_LIMIT)
    after = outcome(client, FRESH)
    assert after["status"] == "done", after["error"]
    fresh = printed_json(after)
    assert (fresh["cell"], fresh["tmp"], fresh["shm"]) == ([], tmp_skeleton(), []), \
        f"the next request saw files: {fresh}"
    assert fresh["free_mb"] >= DISK_LIMIT - 2, f"the next request has only {fresh['free_mb']} MB free"
    assert_serves_normally(client)


@pytest.mark.parametrize("code", [
    "with open('big.bin', 'wb') as fh:\n    fh.write(b'x' * 2_000_000)",
    "import os\nos.truncate(open('sparse.bin', 'wb').name, 10 ** 12)  # a sparse file of a terabyte",
    "with open('append.bin', 'ab') as fh:\n"
    "    for _ in range(2000):\n        fh.write(b'x' * 1000)\n        fh.flush()",
], ids=["one-write", "sparse", "appending"])
def test_a_file_past_the_file_size_limit_is_stopped(client: Client, code: str) -> None:
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert_limit(ended, "FileSizeLimitExceeded", "file_size", FILE_SIZE_LIMIT)
    assert_serves_normally(client)


def test_holding_too_many_files_open_is_stopped_by_the_open_files_limit(client: Client) -> None:
    ended = outcome(client, "handles = [open('/dev/null') for _ in range(100_000)]", deadline=ENDED_WITHIN)
    assert_limit(ended, "OpenFilesLimitExceeded", "open_files", OPEN_FILES_LIMIT)
    assert_serves_normally(client)


# -- output ----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [
    "while True:\n    print('x' * 1000)",
    "import sys\nwhile True:\n    sys.stderr.write('e' * 1000)",
    "from IPython.display import HTML, display\ndisplay(HTML('<p>' + 'y' * 10_000_000 + '</p>'))",
    "import subprocess\nsubprocess.run(['yes'])",
    "import os\nwhile True:\n    os.write(1, b'z' * 4096)",
], ids=["print-loop", "stderr-loop", "one-huge-display", "subprocess", "raw-fd"])
def test_runaway_output_is_cut_at_the_limit_and_stops_the_cell(client: Client, code: str) -> None:
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    stored = sum(len(m["content"].get("text", "")) for m in ended["messages"] if m["msg_type"] == "stream")
    stored += sum(len(str(m["content"].get("data", ""))) for m in ended["messages"] if m["msg_type"] == "display_data")
    assert stored <= OUTPUT_LIMIT + 500, f"{stored} bytes of output were stored with a limit of {OUTPUT_LIMIT}"
    assert "output truncated" in ended["stderr"]
    assert_limit(ended, "OutputLimitExceeded", "output", OUTPUT_LIMIT)
    assert ended["took"] < TIME_LIMIT, f"the cell was stopped only after {ended['took']:.1f} s, by the time limit"
    assert_serves_normally(client)


# -- time ------------------------------------------------------------------------------------

LOOPING = "print('looping', flush=True)\n"


@pytest.mark.parametrize("code", [LOOPING + c for c in (
    "while True:\n    pass",
    "import signal, ctypes\nfor s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):\n"
    "    signal.signal(s, signal.SIG_IGN)\nctypes.CDLL(None).sleep(1000)",
    "import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')",
    "import threading\ndef spin():\n    while True:\n        pass\n"
    "for _ in range(4):\n    threading.Thread(target=spin, daemon=True).start()\nspin()",
    "import subprocess\nsubprocess.run(['sh', '-c', 'trap \"\" TERM INT HUP; while :; do :; done'])",
    "import os, time\ntime.sleep(0.3)\nos.execv('/bin/sleep', ['sleep', '1000'])",
    "import os, time\ntime.sleep(0.3)\nos.closerange(0, 4096)\nwhile True:\n    pass",
)], ids=["busy", "c-sleep-ignoring-signals", "regex-backtracking", "busy-threads", "busy-subprocess",
         "exec-into-sleep", "close-every-descriptor"])
def test_a_cell_that_never_ends_is_stopped_at_the_time_limit_while_others_run(client: Client, second_client: Client,
                                                                             code: str) -> None:
    sent = time.monotonic()
    looping = client.execute(code)
    read_stdout_until(client, looping, "looping")
    started = time.monotonic()
    meanwhile = outcome(second_client, "print('meanwhile')", deadline=ENDED_WITHIN)
    assert meanwhile["status"] == "done" and meanwhile["stdout"] == "meanwhile\n"
    assert time.monotonic() - started < TIME_LIMIT - 0.5, "another request waited for the looping one"
    ended = follow(client, looping)
    took = time.monotonic() - sent
    assert took < TIME_LIMIT + 5, f"stopped {took:.1f} s after it was sent, with a {TIME_LIMIT} s limit"
    assert_limit(ended, "TimeLimitExceeded", "time", TIME_LIMIT, status="timeout")
    assert_serves_normally(client)
