"""A sandbox layer: one kind of confinement applied inside a freshly forked kernel.

The kernel template builds its layers once at start (``from_settings``) and asks each whether
it can work on this host (``check``). In every forked child it then calls, in the registry's
order (:data:`device.sandbox.registry.LAYER_TYPES`):

1. ``isolate`` of every layer, while the child is still single-threaded and holds the
   server's privileges: new namespaces, mounts (a user namespace can only be entered, and
   mount tables only be rebuilt safely, by a process with one thread);
2. the child starts its channel to the device (ZeroMQ's threads, the output pump);
3. ``apply`` of every layer, the last thing before user code: dropping to the kernel's own
   uid, resource limits, the system-call filter (which must come last of all).

A layer whose ``check`` said it is inactive is not called at all. ``singlecell doctor`` and
the device's start-up log print every layer's ``check()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LayerStatus:
    name: str
    active: bool
    detail: str  # what it enforces when active, why it is off when not


@dataclass(frozen=True)
class KernelPlace:
    """What a layer may need to know about the child it confines."""

    home: str  # the kernel's own folder: holds workdir, tmpdir and its socket to the device
    workdir: str  # the kernel's empty working folder (its cwd)
    tmpdir: str  # its private temporary folder (its /tmp when the filesystem layer is on)
    socket: str = ""  # the Unix socket it talks to the device through, if it is a path
    uid: int | None = None  # the unprivileged uid (and gid) of this kernel's slot, if any
    cgroups: tuple[str, ...] = ()  # control groups it joins (as root), see device/cgroup.py
    # a network namespace made for its uid, to enter instead of making one: a descriptor the
    # forked kernel inherits and keeps past its sweep of the template's descriptors
    netns_fd: int | None = None


class SandboxLayer(ABC):
    #: short name used in settings, ``--sandbox``, and ``doctor`` output
    name: str = ""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: dict[str, Any]) -> SandboxLayer:
        """Build the layer from the JSON settings the device sent the template (see
        :func:`device.sandbox.registry.layer_settings`). Cheap; touches nothing."""

    @abstractmethod
    def check(self) -> LayerStatus:
        """Whether this layer can be applied on this host, and what it enforces. Called once,
        in the template (single-threaded) or by ``doctor``; it may fork a short-lived probe
        process but changes nothing in the caller."""

    def before_fork(self, place: KernelPlace) -> KernelPlace:
        """In the template (single-threaded, privileged), just before it forks a kernel for
        ``place``: what can be prepared once and shared by that uid's kernels. Returns the
        place, with more filled in if the layer prepared something."""
        return place

    def isolate(self, place: KernelPlace) -> KernelPlace | None:
        """Phase 1 in the forked kernel: single-threaded and still privileged. Namespaces and
        mounts go here. Returns the kernel's places as it sees them from now on if the layer
        moved them (the filesystem layer does), else None. Raises
        :class:`singlecell.errors.SandboxError` when it cannot."""
        return None

    @abstractmethod
    def apply(self, place: KernelPlace) -> None:
        """Phase 2 in the forked kernel, once, just before user code (other threads may
        exist now). Raises :class:`singlecell.errors.SandboxError` when it cannot; the child
        then exits without running the cell and the device reports the failure."""
