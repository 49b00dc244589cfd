"""The device↔template messages: what one side writes, the other reads back unchanged."""

from __future__ import annotations

import pytest

from device import control

TO_TEMPLATE = [
    control.Configure(preload=["numpy"], layers={"network": {"enabled": True}}),
    control.KernelSpec(slot="a1", endpoint="ipc:///tmp/x/socket", key="ab" * 32, home="/tmp/x", workdir="/tmp/x/w",
                       tmpdir="/tmp/x/t", output_limit=10, uid=200001, cgroups=("/sys/fs/cgroup/a",)),
    control.KernelSpec(slot="a2", endpoint="ipc:///tmp/y/socket", key="cd" * 32, home="/tmp/y", workdir="/tmp/y/w",
                       tmpdir="/tmp/y/t", output_limit=10),
    control.Exit(),
]
TO_DEVICE = [
    control.Ready(pid=12, layers=[("network", True, "its own loopback"), ("syscalls", False, "no libseccomp")]),
    control.Forked(slot="a1", pid=13),
    control.ForkFailed(slot="a1", error="no memory"),
    control.Exited(pid=13, status=9, cpu_ms=2750),
    control.Refused(error="not JSON"),
]


@pytest.mark.parametrize("message", TO_TEMPLATE, ids=lambda m: m.op)
def test_what_the_device_writes_the_template_reads(message: control.ToTemplate) -> None:
    assert control.to_template(message.to_json()) == message


@pytest.mark.parametrize("message", TO_DEVICE, ids=lambda m: m.op)
def test_what_the_template_writes_the_device_reads(message: control.ToDevice) -> None:
    assert control.to_device(message.to_json()) == message


def test_a_side_reads_only_its_own_kinds() -> None:
    with pytest.raises(control.BadControlMessage, match="unknown control message 'forked'"):
        control.to_template(control.Forked(slot="a", pid=1).to_json())
    with pytest.raises(control.BadControlMessage, match="unknown control message 'exit'"):
        control.to_device(control.Exit().to_json())
