"""Attacks through files: reading the server's DB, config, log and environment; another kernel's
folder; links and special files planted in the output folder for the device (which runs as
root) to collect; names the filestore refuses; writing where the system lives; set-uid
programs; and leaving something behind for the next request."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import string
import textwrap
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from singlecell.client import Client, ClientError
from tests.security.hostile import (
    DISK_LIMIT,
    ENDED_WITHIN,
    FILE_SIZE_LIMIT,
    HOSTILE_FLAGS,
    MAX_OUTPUT_FILES,
    assert_nothing_left,
    assert_serves_normally,
    follow,
    printed_json,
    read_stdout_until,
    require_layers,
    server_pids,
    tmp_skeleton,
)
from tests.servers import Server, Servers, outcome

SECRET_VAR = "OPERATOR_API_TOKEN"  # a secret in the operator's environment: cloud keys, say

#: every attack here runs twice: as a one-shot cell, and in a Jupyter client's kernel
THROUGH_KERNELS = True


def files_of(ended: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The files the device collected, by name."""
    found: dict[str, dict[str, Any]] = {}
    for m in ended["messages"]:
        if m["msg_type"] == "extension" and m["content"]["msg_type"] == "files":
            found.update({f["name"]: f for f in m["content"]["content"]["files"]})
    return found


def assert_not_served(client: Client, request_id: str, name: str) -> None:
    with pytest.raises(ClientError) as caught:
        client.file(f"/files/{request_id}/{urllib.parse.quote(name)}")
    assert caught.value.status == 404, f"{name} was served"


# -- the server's own secrets ----------------------------------------------------------------

@pytest.fixture(scope="module")
def secretive(module_servers: Servers) -> Iterator[tuple[Server, str]]:
    """A server with secrets a cell must not learn: a config file holding a password, a store
    URL naming one (as a PostgreSQL URL would), and a token in the operator's environment."""
    token = uuid.uuid4().hex
    config = module_servers.folder / "singlecell.toml"
    config.write_text(f'# the operator keeps a password here: {token}\nlog_level = "info"\n')
    store = module_servers.folder / f"store-{token}.db"
    os.environ[SECRET_VAR] = token
    try:
        server = module_servers("serve", *HOSTILE_FLAGS, "--kernel-uids", "204000-204999", "--config", str(config),
                                "--db", f"sqlite:///{store}", name="secretive")
    finally:
        del os.environ[SECRET_VAR]
    yield server, token


FIND_SECRETS = """
import errno, json, os
found = {{}}
for path in {paths!r}:
    try:
        if os.path.isdir(path):
            found[path] = sorted(os.listdir(path))
        else:
            with open(path, 'rb') as fh:
                found[path] = fh.read(200).decode('latin-1')
    except OSError as exc:
        pass
print(json.dumps(found))
"""


def test_the_servers_db_config_log_and_processes_are_not_there(secretive: tuple[Server, str]) -> None:
    server, token = secretive
    pids = server_pids(server)
    data = server.data_dir
    paths = [str(p) for p in (data, data / "files.db", server.data_dir.parent / f"store-{token}.db",
                              server.data_dir.parent / "singlecell.toml", server.log_path, server.data_dir.parent)]
    missing = [p for p in paths if not os.path.exists(p)]
    assert missing == [], f"the test looks for files the server does not have: {missing}"
    paths += [f"/proc/{pid}/{what}" for pid in (1, *pids.values()) for what in ("environ", "cmdline", "root/")]
    client = server.client()
    try:
        ended = outcome(client, FIND_SECRETS.format(paths=paths), deadline=ENDED_WITHIN)
        assert ended["status"] == "done", ended["error"]
        assert printed_json(ended) == {}, "the cell could read the server's files"
        assert_serves_normally(client)
    finally:
        client.close()


SEARCH_ENVIRONMENT = """
import json, os
token = {token!r}
seen = {{k: v for k, v in os.environ.items() if k.startswith('SINGLECELL_') or token in k + v}}
with open('/proc/self/environ', 'rb') as fh:
    seen['/proc/self/environ'] = token.encode() in fh.read()
print(json.dumps(seen))
"""


def test_the_servers_settings_and_environment_do_not_reach_the_cell(secretive: tuple[Server, str]) -> None:
    server, token = secretive
    client = server.client()
    try:
        ended = outcome(client, SEARCH_ENVIRONMENT.format(token=token), deadline=ENDED_WITHIN)
        assert ended["status"] == "done", ended["error"]
        seen = printed_json(ended)
        assert seen == {"/proc/self/environ": False}, (
            "the cell's environment holds the server's settings (SINGLECELL_DB is where a database "
            f"password lives) or the operator's secrets: {sorted(seen)}")
        assert_serves_normally(client)
    finally:
        client.close()


DESCRIPTORS = """
import json, os, stat
marker = {marker!r}
found = []
for fd in range(3, 1024):
    try:
        info = os.fstat(fd)
    except OSError:
        continue
    if stat.S_ISREG(info.st_mode) or stat.S_ISCHR(info.st_mode):
        found.append([fd, info.st_dev, info.st_ino])
        try:
            os.write(fd, marker.encode())
        except OSError:
            pass
print(json.dumps(found))
"""


def test_the_cell_holds_no_descriptor_of_the_servers_log(secretive: tuple[Server, str]) -> None:
    """A descriptor of the server's log left open in the kernel lets a cell forge log lines."""
    server, _ = secretive
    marker = f"ERROR singlecell: forged by a cell {uuid.uuid4().hex}\n"
    log = os.stat(server.log_path)
    client = server.client()
    try:
        ended = outcome(client, DESCRIPTORS.format(marker=marker), deadline=ENDED_WITHIN)
        assert ended["status"] == "done", ended["error"]
        held = [fd for fd, dev, ino in printed_json(ended) if (dev, ino) == (log.st_dev, log.st_ino)]
        assert marker not in server.log_text(), "the cell wrote into the server's log"
        assert held == [], f"the cell holds the server's log open as fd {held}"
        assert_serves_normally(client)
    finally:
        client.close()


# -- another kernel's folder -----------------------------------------------------------------

def test_another_kernels_folder_is_out_of_reach(client: Client, second_client: Client, hostile: Server,
                                                active_layers: set[str]) -> None:
    require_layers(active_layers, "identity", "filesystem")
    token = uuid.uuid4().hex
    victim = second_client.execute(
        f"import os, time\nfor path in ('/cell/secret.txt', '/tmp/secret.txt'):\n"
        f"    open(path, 'w').write({token!r})\nprint(os.getpid(), flush=True)\ntime.sleep(2)\nprint('victim ok')")
    victim_pid = int(read_stdout_until(second_client, victim, "\n").split()[0])
    device = server_pids(hostile)["device"]
    # where the victim's files are on the host, found through the device's mount namespace
    host_paths = [path.removeprefix(f"/proc/{device}/root")
                  for pattern in ("/tmp/singlecell-kernels-*/*/*/secret.txt", "/tmp/sc-*/*/*/secret.txt")
                  for path in glob.glob(f"/proc/{device}/root{pattern}")
                  if Path(path).read_text() == token]
    assert host_paths, "cannot find the victim's folder on the host: the test would prove nothing"
    paths = [*host_paths, *(str(Path(p).parent.parent) for p in host_paths), f"/proc/{victim_pid}/root/cell/secret.txt",
             f"/proc/{victim_pid}/cwd/secret.txt", f"/proc/{victim_pid}/root/tmp/secret.txt", "/tmp/secret.txt"]
    ended = outcome(client, FIND_SECRETS.format(paths=paths), deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert printed_json(ended) == {}, "the cell could read another kernel's files"
    assert follow(second_client, victim)["stdout"] == f"{victim_pid}\nvictim ok\n"
    assert_serves_normally(client)


# -- what the device collects ----------------------------------------------------------------

def test_symlinks_to_server_files_are_not_collected(client: Client, hostile: Server) -> None:
    device = server_pids(hostile)["device"]
    targets = {
        "db": str(hostile.db_path), "log": str(hostile.log_path), "shadow": "/etc/shadow",
        "device-environ": f"/proc/{device}/environ", "init-environ": "/proc/1/environ",
        "relative-shadow": "../" * 12 + "etc/shadow", "data-dir": str(hostile.data_dir), "root-dir": "/",
        "parent-dir": "..", "loop": "loop",
    }
    code = "import os\n" + "".join(f"os.symlink({target!r}, {name!r})\n" for name, target in targets.items()) \
        + "open('real.txt', 'w').write('real')\nprint(sum(os.path.islink(n) for n in os.listdir('.')))"
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert ended["stdout"] == f"{len(targets)}\n", ended  # the links were really planted
    assert list(files_of(ended)) == ["real.txt"]
    for name in targets:
        assert_not_served(client, ended["id"], name)
    assert_not_served(client, ended["id"], "data-dir/singlecell.db")
    assert_serves_normally(client)


def test_hard_links_are_not_collected(client: Client, active_layers: set[str]) -> None:
    code = textwrap.dedent("""
        import errno, os
        tried = []
        for target in ('/etc/passwd', '/etc/shadow', '/usr/bin/su'):
            try:
                os.link(target, os.path.basename(target))
                tried.append('linked')
            except OSError as exc:
                tried.append(errno.errorcode[exc.errno])
        open('mine.txt', 'w').write('mine')
        os.link('mine.txt', 'second-name.txt')
        print(tried)
    """)
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    if "filesystem" in active_layers:  # the system folders are other mounts: no link can cross
        assert "linked" not in ended["stdout"], ended["stdout"]
    assert files_of(ended) == {}
    assert "hard link" in ended["stderr"]
    for name in ("passwd", "shadow", "su", "mine.txt", "second-name.txt"):
        assert_not_served(client, ended["id"], name)
    assert_serves_normally(client)


SPECIAL_FILES = """
import os, socket, errno
os.mkfifo('fifo')
listener = socket.socket(socket.AF_UNIX)
listener.bind('/cell/socket')
listener.listen()
try:
    os.mknod('null-device', 0o666 | 0o020000, os.makedev(1, 3))
    print('mknod worked')
except OSError as exc:
    print(errno.errorcode[exc.errno])
os.symlink('/dev/zero', 'zero')
os.symlink('/dev/urandom', 'random')
open('real.txt', 'w').write('real')
"""


def test_fifos_sockets_and_devices_in_the_output_folder_are_skipped(client: Client) -> None:
    ended = outcome(client, SPECIAL_FILES, deadline=ENDED_WITHIN)  # a blocking read of the FIFO would hang here
    assert ended["status"] == "done", ended["error"]
    assert ended["stdout"] == "EPERM\n"
    assert list(files_of(ended)) == ["real.txt"]
    assert "fifo" in ended["stderr"] and "socket" in ended["stderr"]
    assert_serves_normally(client)


SWAPPER = """
import os, time
print(os.getuid(), flush=True)
open('innocent.txt', 'w').write('innocent')
os.mkdir('realdir')
open('realdir/inner.txt', 'w').write('innocent')
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:  # swaps names between files and links to /etc until it is killed
        steps = (lambda: os.symlink('/etc/shadow', 'link.tmp'), lambda: os.rename('link.tmp', 'race.txt'),
                 lambda: open('file.tmp', 'w').write('innocent'), lambda: os.rename('file.tmp', 'race.txt'),
                 lambda: os.rename('realdir', 'racedir'), lambda: os.rename('racedir', 'realdir'),
                 lambda: os.symlink('/etc', 'racedir'), lambda: os.unlink('racedir'))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for step in steps:
                try:
                    step()
                except OSError:
                    pass
    os._exit(0)
time.sleep(0.3)
"""


def test_a_file_swapped_for_a_symlink_while_the_cell_ends_is_not_followed(client: Client, hostile: Server,
                                                                        active_layers: set[str]) -> None:
    require_layers(active_layers, "identity")
    ended = outcome(client, SWAPPER, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert_nothing_left(hostile, int(ended["stdout"].split()[0]))
    collected = files_of(ended)
    assert "innocent.txt" in collected
    for name, meta in collected.items():  # a file the swapper had made but not yet written is empty
        assert client.file(meta["url"]) in (b"", b"innocent"), f"{name} was collected through a link"
        assert not name.startswith("racedir/") or name == "racedir/inner.txt", f"{name} came from /etc"
    assert_serves_normally(client)


def test_huge_file_counts_and_deep_trees_are_collected_within_bounds(client: Client) -> None:
    code = textwrap.dedent("""
        import os
        os.mkdir('many')
        for i in range(600):
            open(f'many/{i:04}', 'w').close()
        deep = '/'.join(['d'] * 300)
        os.makedirs(deep)
        open(deep + '/bottom.txt', 'w').write('bottom')
    """)
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    collected = files_of(ended)
    assert 0 < len(collected) <= MAX_OUTPUT_FILES
    assert f"files after the first {MAX_OUTPUT_FILES}" in ended["stderr"]
    assert_serves_normally(client)


def test_sparse_files_do_not_make_the_server_store_more_than_the_disk_limit(client: Client) -> None:
    """A sparse file takes no room in the cell's quota, but the device reads and stores every
    byte of it: a cell must not make the server keep more than it could have written."""
    code = ("import os\nfor i in range(100):\n    with open(f'sparse{i:03}.bin', 'wb') as fh:\n"
            f"        fh.truncate({FILE_SIZE_LIMIT - 1})\n"
            "st = os.statvfs('/cell')\nprint((st.f_blocks - st.f_bfree) * st.f_frsize)")
    ended = outcome(client, code, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    assert int(ended["stdout"]) < 1 << 20, "the files were not sparse: the test proves nothing"
    stored = sum(f["size"] for f in files_of(ended).values())
    assert stored <= DISK_LIMIT << 20, (
        f"the server stored {stored >> 20} MB of files from a cell that used {int(ended['stdout']) >> 10} KB of its "
        f"{DISK_LIMIT} MB disk limit")
    assert_serves_normally(client)


@pytest.mark.parametrize("code", [
    "open('back\\\\slash.txt', 'w').write('x')",
    "open(b'not-utf8-\\xff.txt', 'wb').write(b'x')",
    "import os\npath = '/'.join(['d' * 250] * 5)\nos.makedirs(path)\nopen(path + '/long.txt', 'w').write('x')",
], ids=["backslash", "not-utf8", "longer-than-1024-bytes"])
def test_a_file_name_the_filestore_refuses_does_not_hang_the_request(client: Client, code: str) -> None:
    """The device collects what the cell left; a name the filestore refuses must be skipped,
    not leave the request running for ever."""
    request_id = client.execute(code + "\nopen('good.txt', 'w').write('good')")
    ended = follow(client, request_id, deadline=6)
    assert ended["status"] == "done", ended["error"]
    assert list(files_of(ended)) == ["good.txt"]
    assert_serves_normally(client)


@pytest.mark.parametrize("name", ["line\nbreak.txt", "carriage\rreturn.txt", "\u202eexe.txt", "emoji \U0001f600.txt",
                                  "tab\there.txt", "x'); DROP TABLE files; --.txt", "n" * 251 + ".txt",
                                  "%2e%2e%2fescape.txt", ".hidden"])
def test_an_unusual_file_name_round_trips_and_cannot_split_headers(client: Client, name: str) -> None:
    ended = outcome(client, f"open({name!r}, 'w').write({name!r})", deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    collected = files_of(ended)
    assert list(collected) == [name]
    status, headers, body = client.request("GET", urllib.parse.urlsplit(collected[name]["url"]).path)
    assert status == 200 and body == name.encode()
    assert all("\r" not in value and "\n" not in value for value in headers.values())
    assert_serves_normally(client)


# -- writing where the system lives ----------------------------------------------------------

WRITE_EVERYWHERE = """
import errno, json, os, sys, site
import device, numpy
targets = ['/etc/passwd', '/etc/cron.d/evil', '/usr/lib/evil', '/bin/evil', '/evil', '/var/evil', '/root/evil',
           os.path.join(os.path.dirname(os.__file__), 'evil.py'),
           os.path.join(site.getsitepackages()[0], 'sitecustomize.py'),
           os.path.join(os.path.dirname(numpy.__file__), '__init__.py'),
           os.path.join(os.path.dirname(device.__file__), 'kernel.py'),
           sys.executable, '/proc/sys/kernel/core_pattern', '/proc/sysrq-trigger',
           '/sys/kernel/mm/transparent_hugepage/enabled', '/sys/fs/cgroup/pids/cgroup.procs',
           '/sys/fs/cgroup/cgroup.procs', '/dev/mem', '/dev/kmsg', '/dev/sda', '/dev/vda', '/dev/evil']
written = {}
for path in targets:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))  # opened for writing: enough
        written[path] = 'opened'
    except OSError as exc:
        pass
print(json.dumps({"written": written, "dev": sorted(os.listdir('/dev'))}))
"""


def test_the_system_the_python_install_and_the_server_code_are_read_only(client: Client,
                                                                          active_layers: set[str]) -> None:
    require_layers(active_layers, "identity", "filesystem")
    ended = outcome(client, WRITE_EVERYWHERE, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    seen = printed_json(ended)
    assert seen["written"] == {}, "the cell could write there"
    assert set(seen["dev"]) <= {"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
                                "zero"}, seen["dev"]
    assert_serves_normally(client)


SETUID = """
import json, os, subprocess, time
child = subprocess.Popen(['su', 'root', '-c', 'id -u'], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
time.sleep(0.5)  # su waits for a password: as root if its set-uid bit took effect
with open(f'/proc/{child.pid}/status') as fh:
    su_uids = [line.split()[1:] for line in fh if line.startswith('Uid:')][0]
child.kill()
child.wait()
mount = subprocess.run(['mount', '-t', 'tmpfs', 'none', '/tmp'], capture_output=True)
with open('/proc/self/status') as fh:
    no_new_privs = [line.split()[1] for line in fh if line.startswith('NoNewPrivs:')][0]
print(json.dumps({"uid": os.getuid(), "su": su_uids, "mount": mount.returncode, "no_new_privs": no_new_privs,
                  "nosuid": bool(os.statvfs('/usr/bin').f_flag & os.ST_NOSUID)}))
"""


def test_set_uid_programs_give_no_privileges(client: Client, active_layers: set[str]) -> None:
    require_layers(active_layers, "identity", "syscalls")
    ended = outcome(client, SETUID, deadline=ENDED_WITHIN)
    assert ended["status"] == "done", ended["error"]
    seen = printed_json(ended)
    assert seen["su"] == [str(seen["uid"])] * 4, f"su ran with uids {seen['su']}"
    assert seen["mount"] != 0
    assert seen["no_new_privs"] == "1" and seen["nosuid"]
    assert_serves_normally(client)


# -- leaving something behind ----------------------------------------------------------------

LEAVE = """
import os, numpy, string
for path in ('/tmp/left', '/var/tmp/left-var', '/dev/shm/left', '/cell/left'):
    open(path, 'w').write('left')
startup = os.path.expanduser('~/.ipython/profile_default/startup')
os.makedirs(startup)
open(os.path.join(startup, '00-evil.py'), 'w').write("print('EVIL STARTUP RAN')")
os.makedirs(os.path.expanduser('~/.config/matplotlib'))
open(os.path.expanduser('~/.config/matplotlib/matplotlibrc'), 'w').write('backend: evil')
string.ascii_letters = 'poisoned'
numpy.pi = 3
os.environ['LEFT_BEHIND'] = '1'
import builtins
builtins.print = lambda *a, **k: None
"""
FIND = """
import json, os, numpy, string
left = [p for p in ('/tmp/left', '/var/tmp/left-var', '/dev/shm/left', '/cell/left', '/cell/.ipython',
                    '/cell/.config') if os.path.exists(p)]
print(json.dumps({"left": left, "pi": numpy.pi, "env": 'LEFT_BEHIND' in os.environ, "letters": string.ascii_letters,
                  "cell": os.listdir('/cell'), "tmp": os.listdir('/tmp'), "shm": os.listdir('/dev/shm')}))
"""


def test_files_and_state_do_not_persist_between_requests(client: Client) -> None:
    first = outcome(client, LEAVE, deadline=ENDED_WITHIN)
    assert first["status"] == "done", first["error"]
    second = outcome(client, FIND, deadline=ENDED_WITHIN)
    assert second["status"] == "done", second["error"]
    assert "EVIL" not in second["stdout"]
    seen = printed_json(second)
    assert seen == {"left": [], "pi": 3.141592653589793, "env": False, "letters": string.ascii_letters,
                    "cell": [], "tmp": tmp_skeleton(), "shm": []}
    assert_serves_normally(client)


IPC_KEYS = (0x5C5C0001, 0x5C5C0002, 0x5C5C0003)
IPC = """
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.mq_open.restype = ctypes.c_int
shm_key, msg_key, sem_key = {keys!r}
create = {create!r}
flags = (0o1000 | 0o666) if create else 0  # IPC_CREAT
result = {{}}
shm = libc.shmget(shm_key, 4096 if create else 0, flags)
result['shm'] = shm if shm < 0 else 'found'
if shm >= 0:
    address = libc.shmat(shm, None, 0)
    if create:
        ctypes.memmove(address, {token!r}.encode(), 32)
    else:
        result['shm'] = ctypes.string_at(address, 32).decode()
result['msg'] = 'found' if libc.msgget(msg_key, flags) >= 0 else errno.errorcode[ctypes.get_errno()]
result['sem'] = 'found' if libc.semget(sem_key, 1 if create else 0, flags) >= 0 else errno.errorcode[ctypes.get_errno()]
queue = libc.mq_open({queue!r}.encode(), (os.O_CREAT | os.O_RDWR) if create else os.O_RDONLY, 0o666, None)
result['mq'] = 'found' if queue >= 0 else errno.errorcode[ctypes.get_errno()]
with open('/proc/sysvipc/shm') as fh:
    result['segments'] = len(fh.read().splitlines()) - 1
print(json.dumps(result))
"""


def _remove_ipc(queue: str) -> None:
    """Remove what the test's cells made in the host's IPC namespace (if they reached it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    shm_key, msg_key, sem_key = IPC_KEYS
    if (shm := libc.shmget(shm_key, 0, 0)) >= 0:
        libc.shmctl(shm, 0, None)  # IPC_RMID
    if (msg := libc.msgget(msg_key, 0)) >= 0:
        libc.msgctl(msg, 0, None)
    if (sem := libc.semget(sem_key, 0, 0)) >= 0:
        libc.semctl(sem, 0, 0)
    with contextlib.suppress(AttributeError):
        libc.mq_unlink(queue.encode())


def test_ipc_objects_do_not_persist_between_requests_or_show_the_hosts(client: Client) -> None:
    """System V shared memory, message queues and semaphores, and POSIX message queues, live in
    an IPC namespace: a cell in the host's can leave memory (and messages) behind that no
    limit counts and no request end removes, and see the host's own segments."""
    token, queue = uuid.uuid4().hex, f"/sc-{uuid.uuid4().hex[:8]}"
    _remove_ipc(queue)
    try:
        first = outcome(client, IPC.format(keys=IPC_KEYS, create=True, token=token, queue=queue),
                        deadline=ENDED_WITHIN)
        assert first["status"] == "done", first["error"]
        second = outcome(client, IPC.format(keys=IPC_KEYS, create=False, token=token, queue=queue),
                         deadline=ENDED_WITHIN)
        assert second["status"] == "done", second["error"]
        seen = printed_json(second)
        assert seen == {"shm": -1, "msg": "ENOENT", "sem": "ENOENT", "mq": "ENOENT", "segments": 0}, (
            f"what the previous request made is still there, or the host's is visible: {seen}")
        assert_serves_normally(client)
    finally:
        _remove_ipc(queue)
