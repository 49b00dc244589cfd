"""A sandbox layer: one kind of confinement applied inside a freshly forked kernel.

The kernel template builds its layers once at start (``from_settings``), asks each whether it
can work on this host (``check``), and in every forked child calls ``apply`` after the child
has its own session, working folder and channel to the device, and before any user code runs.
``singlecell doctor`` (and the device's start-up log) print ``describe()`` of every layer.
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

    workdir: str  # the kernel's empty working folder (its cwd)
    tmpdir: str  # its private temporary folder


class SandboxLayer(ABC):
    #: short name used in settings and in ``doctor`` output
    name: str = ""

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: dict[str, Any]) -> SandboxLayer:
        """Build the layer from the JSON settings the device sent the template."""

    @abstractmethod
    def check(self) -> LayerStatus:
        """Whether this layer can be applied on this host, without applying it. Cheap; no
        side effects. Called once in the template."""

    @abstractmethod
    def apply(self, place: KernelPlace) -> None:
        """Confine the calling process (the forked kernel). Runs in the child only, once,
        before user code. Raises :class:`singlecell.errors.SandboxError` when it cannot; the
        child then exits without running the cell and the device reports the failure."""
