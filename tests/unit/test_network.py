"""The network layer's namespaces per kernel uid, in the template (device/sandbox/network.py):
reused, bounded least recently used first, and entered through the child's own descriptor."""

from __future__ import annotations

import dataclasses
import os

import pytest

from device.sandbox.base import KernelPlace
from device.sandbox.network import Network

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces are kept per uid only as root")

PLACE = KernelPlace(home="/", workdir="/", tmpdir="/")


def namespace_of(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def open_namespaces() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        except OSError:
            continue
    return count


def fork_for(layer: Network, uid: int) -> int | None:
    fd = layer.before_fork(dataclasses.replace(PLACE, uid=uid)).netns_fd
    assert fd is not None
    return fd


def test_each_uid_keeps_its_namespace_and_past_keep_the_least_recently_used_is_closed() -> None:
    before = open_namespaces()
    layer = Network(True, keep=2)
    a, b = fork_for(layer, 1), fork_for(layer, 2)
    assert a is not None and b is not None
    first_a, first_b = namespace_of(a), namespace_of(b)
    assert first_a != first_b != os.readlink("/proc/self/ns/net")
    assert fork_for(layer, 1) == a and namespace_of(a) == first_a  # the same uid: the same namespace
    fork_for(layer, 3)  # a third: uid 2, used least recently, is closed
    assert list(layer.namespaces) == [1, 3]
    assert open_namespaces() - before == 2
    for uid in range(4, 40):  # many uids: never more than keep open
        fork_for(layer, uid)
        assert open_namespaces() - before == 2
    for fd in layer.namespaces.values():
        os.close(fd)


def test_a_kernel_enters_the_namespace_it_was_forked_for_even_if_the_template_closed_it() -> None:
    """The template may close a namespace, and hold another on the same descriptor number, before
    its child has entered: the child's own inherited copy still names the one it was forked for."""
    layer = Network(True, keep=1)
    place = layer.before_fork(dataclasses.replace(PLACE, uid=1))
    assert place.netns_fd is not None
    meant = namespace_of(place.netns_fd)
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.read(go_r, 1)
            layer.isolate(place)
            os.write(out_w, os.readlink("/proc/self/ns/net").encode())
        finally:
            os._exit(0)
    os.close(out_w)
    try:
        other = layer.before_fork(dataclasses.replace(PLACE, uid=2))  # uid 1's is closed
        assert list(layer.namespaces) == [2] and other.netns_fd is not None
        os.dup2(other.netns_fd, place.netns_fd)  # and its number now holds uid 2's namespace
        assert namespace_of(place.netns_fd) != meant
    finally:
        os.write(go_w, b"1")
        entered = os.read(out_r, 100).decode()
        os.waitpid(pid, 0)
    assert entered == meant
    for fd in (*layer.namespaces.values(), place.netns_fd, go_r, go_w, out_r):
        os.close(fd)
