"""Control groups for kernels, so a cell's whole process tree — not each process alone — stays
within its memory and process limits (rlimits count per process, or per uid: a cell that forks
32 children could otherwise hold 32 times ``--memory-limit``).

As root, the device makes a group ``singlecell-<its pid>`` beside its own, and in it one group
per kernel uid (made on first use, kept for that uid's next kernel, removed at close), with
``memory`` (``--memory-limit`` + ``--disk-limit``, since the kernel's tmpfs folder is charged
to it, + slack for the pages it copies from the template) and ``pids`` (``--process-limit`` +
its own threads). A kernel joins its group itself, before any user code (the resources layer's
``isolate``). Control groups v1 (memory and pids hierarchies) and v2 (where the device's group
may delegate both controllers) are supported; elsewhere the rlimits stand alone.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
SLACK_MB = 64
THREADS = 16  # the kernel's own: ZeroMQ's two, the output pump, and room


def _own_groups() -> dict[str, str]:
    """controller name ("" for v2) → this process's group path, from /proc/self/cgroup."""
    groups: dict[str, str] = {}
    with open("/proc/self/cgroup") as fh:
        for line in fh:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                groups[name] = path
    return groups


class KernelCgroups:
    def __init__(self, parents: dict[str, Path], memory_mb: int, processes: int, version: int) -> None:
        self.parents = parents  # controller → our group for kernels (v2: one, under "")
        self.memory_mb = memory_mb
        self.processes = processes
        self.version = version
        self.made: set[int] = set()

    @classmethod
    def create(cls, memory_mb: int, processes: int) -> tuple[KernelCgroups | None, str]:
        """The groups, or None and why not."""
        if os.geteuid() != 0:
            return None, "not root"
        if not memory_mb and not processes:
            return None, "no memory or process limit to enforce"
        try:
            own = _own_groups()
        except OSError as exc:
            return None, f"cannot read /proc/self/cgroup ({exc})"
        name = f"singlecell-{os.getpid()}"
        if (ROOT / "cgroup.controllers").exists():  # v2, mounted at /sys/fs/cgroup
            base = ROOT / own.get("", "/").lstrip("/")
            try:
                available = (base / "cgroup.controllers").read_text().split()
                if not {"memory", "pids"} <= set(available):
                    return None, f"cgroup v2 here delegates only {', '.join(available) or 'nothing'}"
                parent = base / name
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            except OSError as exc:
                return None, f"cannot make a cgroup v2 group under {base} ({exc})"
            return cls({"": parent}, memory_mb, processes, 2), "cgroup v2"
        parents: dict[str, Path] = {}
        for controller in ("memory", "pids"):
            mount = ROOT / controller
            if not (mount / "cgroup.procs").exists() or controller not in own:
                return None, f"no cgroup v1 {controller} hierarchy at {mount}"
            parent = mount / own[controller].lstrip("/") / name
            try:
                parent.mkdir(exist_ok=True)
            except OSError as exc:
                return None, f"cannot make {parent} ({exc})"
            parents[controller] = parent
        return cls(parents, memory_mb, processes, 1), "cgroup v1"

    @staticmethod
    def available() -> tuple[bool, str]:
        """Whether :meth:`create` can work here (as far as can be told without making a group)."""
        if os.geteuid() != 0:
            return False, "not root"
        try:
            own = _own_groups()
        except OSError as exc:
            return False, f"cannot read /proc/self/cgroup ({exc})"
        if (ROOT / "cgroup.controllers").exists():
            base = ROOT / own.get("", "/").lstrip("/")
            try:
                available = set((base / "cgroup.controllers").read_text().split())
            except OSError as exc:
                return False, f"cannot read {base} ({exc})"
            ok = {"memory", "pids"} <= available and os.access(base, os.W_OK)
            return ok, "cgroup v2" if ok else f"cgroup v2 here does not delegate memory and pids at {base}"
        for controller in ("memory", "pids"):
            group = ROOT / controller / own.get(controller, "/nonexistent").lstrip("/")
            if not (ROOT / controller / "cgroup.procs").exists() or not os.access(group, os.W_OK):
                return False, f"no writable cgroup v1 {controller} hierarchy"
        return True, "cgroup v1"

    def groups_for(self, uid: int) -> list[str]:
        """The groups a kernel of ``uid`` joins, made and limited the first time."""
        groups = [parent / f"k{uid}" for parent in self.parents.values()]
        if uid not in self.made:
            for group in groups:
                group.mkdir(exist_ok=True)
            self._limit(uid)
            self.made.add(uid)
        return [str(group) for group in groups]

    def _limit(self, uid: int) -> None:
        memory = (self.memory_mb + SLACK_MB) * 1024 * 1024 if self.memory_mb else None
        pids = self.processes + THREADS if self.processes else None
        if self.version == 2:
            group = self.parents[""] / f"k{uid}"
            (group / "memory.max").write_text(str(memory) if memory else "max")
            with contextlib.suppress(OSError):  # no swap either, where swap accounting exists
                (group / "memory.swap.max").write_text("0")
            (group / "pids.max").write_text(str(pids) if pids else "max")
            return
        memory_group = self.parents["memory"] / f"k{uid}"
        if memory:
            (memory_group / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(OSError):
                (memory_group / "memory.memsw.limit_in_bytes").write_text(str(memory))
        (self.parents["pids"] / f"k{uid}" / "pids.max").write_text(str(pids) if pids else "max")

    def oom_kills(self, uid: int) -> int:
        """How many processes the kernel's memory limit has killed in this uid's group so far."""
        if uid not in self.made:
            return 0
        group = self.parents["" if self.version == 2 else "memory"] / f"k{uid}"
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def close(self) -> None:
        """Remove the groups (only empty ones can go; a kernel still dying keeps its own)."""
        for parent in self.parents.values():
            for uid in self.made:
                with contextlib.suppress(OSError):
                    (parent / f"k{uid}").rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()
        self.made.clear()


def join(groups: list[str]) -> None:
    """Move the calling process into ``groups`` (a kernel, as root, before any user code)."""
    pid = str(os.getpid())
    for group in groups:
        with open(os.path.join(group, "cgroup.procs"), "w") as fh:
            fh.write(pid)
