"""System calls: a seccomp filter, loaded last, that refuses (EPERM) the calls a cell never
needs and that attackers use to get out of a sandbox or at the host's kernel: ptrace, mount,
new namespaces, kernel modules and kexec, BPF, perf, keyrings, io_uring, userfaultfd, reboot,
clock and host name changes, … It also sets no_new_privs, so no set-uid program gives a cell
privileges back. Built with libseccomp (``libseccomp.so.2``, through ctypes) where present."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from typing import Any

from device.sandbox import libc
from device.sandbox.base import KernelPlace, LayerStatus, SandboxLayer
from singlecell.errors import SandboxError

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7

#: refused outright
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "open_by_handle_at", "name_to_handle_at",
    "add_key", "request_key", "keyctl",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "vhangup", "lookup_dcookie",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "iopl", "ioperm", "uselib", "nfsservctl",
)
#: clone with any of these flags makes a namespace: refused; clone3 hides its flags in memory
#: where a filter cannot look, so it answers ENOSYS and the C library falls back to clone
NAMESPACE_FLAGS = (0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x02000000,
                   0x00000080)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_SECCOMP = {"x86_64": 317, "aarch64": 277}  # the seccomp(2) system call's number
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    """The filter as the kernel takes it (an array of struct sock_filter), compiled once."""
    read_end, write_end = os.pipe()
    try:
        if lib.seccomp_export_bpf(ctx, write_end) != 0:
            raise SandboxError("cannot compile the seccomp filter")
        os.close(write_end)
        write_end = -1
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


class SyscallFilter(SandboxLayer):
    name = "syscalls"

    def __init__(self) -> None:
        lib = _library()
        self.program: bytes | None = None  # compiled here, once; every kernel only loads it
        self.problem = "" if lib is not None else "libseccomp (libseccomp.so.2) is not installed"
        if lib is not None:
            try:
                ctx = self._build(lib)
                try:
                    self.program = _export(lib, ctx)
                finally:
                    lib.seccomp_release(ctx)
            except SandboxError as exc:
                self.problem = str(exc)
        if self.program is not None and platform.machine() not in _SECCOMP:
            self.program, self.problem = None, f"no seccomp system call number known for {platform.machine()}"

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SyscallFilter:
        return cls()

    @staticmethod
    def _build(lib: ctypes.CDLL) -> int:
        """The filter's rules, in libseccomp's terms (it compiles them for this architecture)."""
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not ctx:
            raise SandboxError("seccomp_init failed")

        def rule(action: int, name: str, *compare: _ArgCmp) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                return  # not a system call on this architecture
            array = (_ArgCmp * len(compare))(*compare) if compare else None
            if lib.seccomp_rule_add_array(ctx, action, number, len(compare), array) != 0:
                raise SandboxError(f"cannot add a seccomp rule for {name}")

        for name in DENIED:
            rule(_errno_action(errno.EPERM), name)
        rule(_errno_action(errno.ENOSYS), "clone3")
        for flag in NAMESPACE_FLAGS:
            rule(_errno_action(errno.EPERM), "clone", _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        return int(ctx)

    def check(self) -> LayerStatus:
        if self.program is None:
            return LayerStatus(self.name, False, self.problem)
        return LayerStatus(self.name, True, f"seccomp refuses {len(DENIED) + 2} system calls "
                           "(ptrace, mount, namespaces, modules, bpf, keyrings, io_uring, …); no_new_privs")

    def apply(self, place: KernelPlace) -> None:
        if self.program is None:
            raise SandboxError(self.problem)
        try:
            libc.set_no_new_privs()
        except OSError as exc:
            raise SandboxError(f"cannot set {exc.strerror}") from exc
        program = ctypes.create_string_buffer(self.program, len(self.program))
        fprog = _SockFprog(len(self.program) // 8, ctypes.cast(program, ctypes.c_void_p))
        # TSYNC: every thread of the kernel (ZeroMQ's too), not just this one
        result, err = libc.syscall(_SECCOMP[platform.machine()], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC,
                                   ctypes.byref(fprog))
        if result != 0:
            why = os.strerror(err) if result < 0 else f"thread {result} could not be synchronised"
            raise SandboxError(f"cannot load the seccomp filter: {why}")
