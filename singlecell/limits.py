"""The limits a cell runs under, in one table: what stops a cell, how it is named, and how it ends.

A cell stopped by a limit ends with an ``error`` whose ename is the limit's and whose evalue
says the limit in plain words (:meth:`Limit.evalue`), a ``limit`` extension message with the
same, and the limit's status. The kernel names the limits it runs into itself (it sees the
exception: ``MemoryError``, ``EFBIG``, …); the device names the ones it enforces from outside
(the wall clock, CPU seconds by SIGXCPU, a control group's OOM kill, a flood of output), and
turns a kernel-named error into the status and the extension. Both read this table, and so
does ``docs/architecture.md`` (a test checks its table against this one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    key: str  # the ``limit`` of the extension message
    what: str  # in words, for the docs
    ename: str  # the error's name
    setting: str  # the Config field that sets it (and so its --flag)
    status: str  # how a request stopped by it ends: a Status's value (not imported: the kernel reads this too)
    message: str  # the evalue: ``{value}`` is the limit, ``{s}`` is "s" unless the value is 1
    named_by: str  # "device", "kernel", or "both"

    @property
    def flag(self) -> str:
        return "--" + self.setting.replace("_", "-")

    def evalue(self, value: float) -> str:
        words = str(int(value)) if float(value).is_integer() else f"{value:g}"
        return self.message.format(value=words, s="" if value == 1 else "s")


_ABORTED, _TIMEOUT = "aborted", "timeout"

LIMITS: tuple[Limit, ...] = (
    Limit("time", "wall clock", "TimeLimitExceeded", "time_limit", _TIMEOUT,
          "the cell ran longer than its limit of {value} second{s} and was stopped", "device"),
    Limit("cpu", "CPU seconds", "CPUTimeLimitExceeded", "cpu_limit", _ABORTED,
          "the cell used more than its limit of {value} CPU second{s} and was stopped", "device"),
    Limit("memory", "memory", "MemoryLimitExceeded", "memory_limit", _ABORTED,
          "the cell used more than its limit of {value} MB of memory and was stopped", "both"),
    Limit("output", "output", "OutputLimitExceeded", "output_limit", _ABORTED,
          "the cell's output passed its limit of {value} bytes, so the cell was stopped", "both"),
    Limit("file_size", "one file's size", "FileSizeLimitExceeded", "file_size_limit", _ABORTED,
          "the cell tried to write a file larger than its limit of {value} bytes", "kernel"),
    Limit("disk", "folder + /tmp", "DiskLimitExceeded", "disk_limit", _ABORTED,
          "the cell's files passed its limit of {value} MB (its folder and /tmp together)", "kernel"),
    Limit("processes", "processes + threads", "ProcessLimitExceeded", "process_limit", _ABORTED,
          "the cell tried to run more than {value} processes and threads at once", "kernel"),
    Limit("open_files", "open files", "OpenFilesLimitExceeded", "open_files_limit", _ABORTED,
          "the cell tried to keep more than {value} files open at once", "kernel"),
)

BY_KEY: dict[str, Limit] = {limit.key: limit for limit in LIMITS}


def output_backstop(output_limit: int) -> int:
    """Bytes on the wire past which the device stops a kernel's output itself: the kernel cuts
    its output at ``output_limit``; this catches what a cell sent past that cut."""
    return 2 * output_limit + (1 << 20)
BY_ENAME: dict[str, Limit] = {limit.ename: limit for limit in LIMITS}
#: the limits a kernel names itself; the device believes only these enames from a kernel
KERNEL_NAMED: dict[str, Limit] = {limit.ename: limit for limit in LIMITS if limit.named_by != "device"}
