"""Resource limits (rlimits): CPU seconds, memory, processes and threads, file size, open
files, no core dumps."""

from __future__ import annotations

import resource
import signal
from typing import Any

from device.cgroup import KernelCgroups, join
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from singlecell.errors import SandboxError

PAGE = resource.getpagesize()


def _virtual_size() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * PAGE


def _threads() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 1


class ResourceLimits(SandboxLayer):
    name = "resources"

    def __init__(self, cpu_seconds: int, memory_mb: int, file_size: int, open_files: int,
                 processes: int = 0) -> None:
        self.cpu_seconds = cpu_seconds
        self.memory_mb = memory_mb
        self.file_size = file_size
        self.open_files = open_files
        self.processes = processes

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ResourceLimits:
        return cls(
            cpu_seconds=int(settings.get("cpu_seconds", 0)),
            memory_mb=int(settings.get("memory_mb", 0)),
            file_size=int(settings.get("file_size", 0)),
            open_files=int(settings.get("open_files", 0)),
            processes=int(settings.get("processes", 0)),
        )

    def check(self) -> LayerStatus:
        parts = [
            f"cpu {self.cpu_seconds} s" if self.cpu_seconds else "cpu unlimited",
            f"memory +{self.memory_mb} MB per process" if self.memory_mb else "memory unlimited",
            f"{self.processes} processes and threads (with a uid of its own)" if self.processes
            else "processes unlimited",
            f"file size {self.file_size} B" if self.file_size else "file size unlimited",
            f"open files {self.open_files}" if self.open_files else "open files unlimited",
            "no core dumps",
        ]
        usable, how = KernelCgroups.available()
        tree = (f"memory and processes also counted for the cell's processes together ({how} group per uid)"
                if usable else f"no control groups ({how}): memory is limited per process only")
        return LayerStatus(self.name, True, ", ".join(parts) + "; " + tree)

    def isolate(self, place: KernelPlace) -> None:
        if place.cgroups:  # as root, before the filesystem layer hides /sys/fs/cgroup
            try:
                join(list(place.cgroups))
            except OSError as exc:
                raise SandboxError(f"cannot join the kernel's control groups: {exc}") from exc

    def apply(self, place: KernelPlace) -> None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if self.cpu_seconds:
                # The soft limit sends SIGXCPU (the device reports it); the hard one a second
                # later SIGKILLs a kernel that ignores it.
                resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 1))
            if self.file_size:
                # a write past the limit then fails with EFBIG (reported as the limit) instead
                # of killing the kernel with SIGXFSZ
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size, self.file_size))
            if self.open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files))
            if self.processes and place.uid is not None:
                # RLIMIT_NPROC counts every process of the uid: only with a uid of its own does
                # it count the kernel's alone. Its own threads (ZeroMQ's, the pump) count too.
                limit = self.processes + _threads()
                resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
            if self.memory_mb:
                # The kernel inherits the template's mappings (IPython, numpy, matplotlib: a
                # few hundred MB of address space); the limit is what the cell may add on top.
                limit = _virtual_size() + self.memory_mb * 1024 * 1024
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError) as exc:
            raise SandboxError(f"cannot set resource limits: {exc}") from exc
