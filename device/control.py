"""The messages between a device and its kernel template, defined once for both sides.

They travel as JSON objects, one a ZeroMQ message, over the template's PAIR socket
(:class:`device.pool.KernelPool` binds it; ``python -m device.template`` connects). Each kind is
a frozen dataclass: the writer builds one (a missing field is a type error there), sends
:meth:`to_json`; the reader gets it back from :func:`to_template` or :func:`to_device`, which
check every field and raise :class:`BadControlMessage` naming what is wrong. The template
answers a message it cannot take with :class:`ForkFailed` (when it can tell which kernel the
message was for) or :class:`Refused`, and goes on: no message can stop it.

device → template: :class:`Configure` (first, once), :class:`Fork`, :class:`Exit`.
template → device: :class:`Ready` (once configured), :class:`Forked`, :class:`ForkFailed`,
:class:`Exited` (for every kernel it reaps, with the raw wait status), :class:`Refused`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from device.sandbox.base import KernelPlace


class BadControlMessage(ValueError):
    """A control message that is not JSON, not an object, of no known kind, or with a field
    missing or of the wrong type. ``slot`` is the kernel it names, when it names one."""

    def __init__(self, message: str, slot: str | None = None) -> None:
        super().__init__(message)
        self.slot = slot


class _Fields:
    """Typed reads of one message's fields; each failure names the field."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        slot = raw.get("slot")
        self.slot = slot if isinstance(slot, str) else None

    def _get(self, name: str, kinds: tuple[type, ...], what: str) -> Any:
        if name not in self.raw:
            raise BadControlMessage(f"{self.raw.get('op')!r} message without {name!r}", self.slot)
        value = self.raw[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise BadControlMessage(f"{self.raw.get('op')!r} message: {name!r} must be {what}, not "
                                    f"{type(value).__name__}", self.slot)
        return value

    def text(self, name: str) -> str:
        value: str = self._get(name, (str,), "a string")
        return value

    def integer(self, name: str) -> int:
        value: int = self._get(name, (int,), "an integer")
        return value

    def optional_integer(self, name: str) -> int | None:
        value: int | None = self._get(name, (int, type(None)), "an integer or null")
        return value

    def texts(self, name: str) -> list[str]:
        value = self._get(name, (list,), "a list of strings")
        if not all(isinstance(item, str) for item in value):
            raise BadControlMessage(f"{self.raw.get('op')!r} message: {name!r} must hold strings only", self.slot)
        return list(value)

    def mapping(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self._get(name, (dict,), "an object")
        return value


@dataclass(frozen=True)
class _Message:
    op: ClassVar[str] = ""

    def to_json(self) -> bytes:
        return json.dumps({"op": self.op, **self._content()}).encode()

    def _content(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- device → template ---------------------------------------------------------------------

@dataclass(frozen=True)
class Configure(_Message):
    """The first message: what to import once, and the sandbox layers' settings
    (:func:`device.sandbox.registry.layer_settings`)."""

    op: ClassVar[str] = "configure"
    preload: list[str]
    layers: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, f: _Fields) -> Configure:
        layers = f.mapping("layers")
        if not all(isinstance(v, dict) for v in layers.values()):
            raise BadControlMessage("'configure' message: every layer's settings must be an object")
        return cls(preload=f.texts("preload"), layers=layers)


@dataclass(frozen=True)
class KernelSpec(_Message):
    """One kernel to fork: the ``fork`` message."""

    op: ClassVar[str] = "fork"
    slot: str
    endpoint: str  # ipc:// address the device bound for this kernel alone
    key: str  # this kernel's own HMAC key (hex): another kernel cannot sign as this one
    home: str  # the kernel's own folder, holding workdir, tmpdir and the socket
    workdir: str
    tmpdir: str
    output_limit: int
    uid: int | None = None  # the uid of its slot, when the server runs as root
    cgroups: tuple[str, ...] = ()  # the control groups of that uid

    @classmethod
    def read(cls, f: _Fields) -> KernelSpec:
        return cls(slot=f.text("slot"), endpoint=f.text("endpoint"), key=f.text("key"), home=f.text("home"),
                   workdir=f.text("workdir"), tmpdir=f.text("tmpdir"), output_limit=f.integer("output_limit"),
                   uid=f.optional_integer("uid"), cgroups=tuple(f.texts("cgroups")))

    def _content(self) -> dict[str, Any]:
        return {**self.__dict__, "cgroups": list(self.cgroups)}

    @property
    def key_bytes(self) -> bytes:
        return self.key.encode("ascii")

    @property
    def place(self) -> KernelPlace:
        socket = self.endpoint.removeprefix("ipc://") if self.endpoint.startswith("ipc://") else ""
        return KernelPlace(home=self.home, workdir=self.workdir, tmpdir=self.tmpdir, socket=socket,
                           uid=self.uid, cgroups=self.cgroups)



@dataclass(frozen=True)
class Exit(_Message):
    """Kill every kernel and exit."""

    op: ClassVar[str] = "exit"

    @classmethod
    def read(cls, f: _Fields) -> Exit:
        return cls()


# -- template → device ---------------------------------------------------------------------

@dataclass(frozen=True)
class Ready(_Message):
    """Configured: the template's pid, and every layer's check: ``[name, active, detail]``."""

    op: ClassVar[str] = "ready"
    pid: int
    layers: list[tuple[str, bool, str]]

    @classmethod
    def read(cls, f: _Fields) -> Ready:
        layers = f._get("layers", (list,), "a list")
        if not all(isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                   and isinstance(item[1], bool) and isinstance(item[2], str) for item in layers):
            raise BadControlMessage("'ready' message: every layer must be [name, active, detail]")
        return cls(pid=f.integer("pid"), layers=[(str(n), bool(a), str(d)) for n, a, d in layers])


@dataclass(frozen=True)
class Forked(_Message):
    op: ClassVar[str] = "forked"
    slot: str
    pid: int

    @classmethod
    def read(cls, f: _Fields) -> Forked:
        return cls(slot=f.text("slot"), pid=f.integer("pid"))


@dataclass(frozen=True)
class ForkFailed(_Message):
    """The kernel of ``slot`` was not forked: the fork failed, or its message was bad."""

    op: ClassVar[str] = "fork_failed"
    slot: str
    error: str

    @classmethod
    def read(cls, f: _Fields) -> ForkFailed:
        return cls(slot=f.text("slot"), error=f.text("error"))


@dataclass(frozen=True)
class Exited(_Message):
    """A kernel was reaped, and everything it left running is gone; ``status`` is the raw wait
    status, ``cpu_ms`` the CPU milliseconds its reaping measured (``wait4``'s user and system)."""

    op: ClassVar[str] = "exited"
    pid: int
    status: int
    cpu_ms: int = 0

    @classmethod
    def read(cls, f: _Fields) -> Exited:
        return cls(pid=f.integer("pid"), status=f.integer("status"), cpu_ms=f.integer("cpu_ms"))


@dataclass(frozen=True)
class Refused(_Message):
    """A message the template could not take, and why; it carries on."""

    op: ClassVar[str] = "refused"
    error: str

    @classmethod
    def read(cls, f: _Fields) -> Refused:
        return cls(error=f.text("error"))


ToTemplate = Configure | KernelSpec | Exit
ToDevice = Ready | Forked | ForkFailed | Exited | Refused

_TO_TEMPLATE: dict[str, type[Configure] | type[KernelSpec] | type[Exit]] = {
    kind.op: kind for kind in (Configure, KernelSpec, Exit)}
_TO_DEVICE: dict[str, Any] = {kind.op: kind for kind in (Ready, Forked, ForkFailed, Exited, Refused)}


def _decode(raw: bytes, kinds: dict[str, Any]) -> Any:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadControlMessage(f"a control message that is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise BadControlMessage(f"a control message must be a JSON object, not {type(message).__name__}")
    fields = _Fields(message)
    kind = kinds.get(message.get("op"))  # type: ignore[arg-type]
    if kind is None:
        raise BadControlMessage(f"unknown control message {message.get('op')!r}; known: {', '.join(kinds)}",
                                fields.slot)
    return kind.read(fields)


def to_template(raw: bytes) -> ToTemplate:
    """A message for the template, checked. Raises :class:`BadControlMessage`."""
    message: ToTemplate = _decode(raw, _TO_TEMPLATE)
    return message


def to_device(raw: bytes) -> ToDevice:
    """A message from the template, checked. Raises :class:`BadControlMessage`."""
    message: ToDevice = _decode(raw, _TO_DEVICE)
    return message
