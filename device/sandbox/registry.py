"""Which sandbox layers exist, their settings from a :class:`~singlecell.config.Config`, and
building them by name. The device sends the settings (plain JSON) to its kernel template, which
builds the layers with :func:`build_layers`; ``singlecell doctor`` and the standalone Jupyter
kernel do the same."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from device.sandbox.base import LayerStatus, SandboxLayer
from device.sandbox.filesystem import Filesystem
from device.sandbox.identity import Identity
from device.sandbox.network import Network
from device.sandbox.resources import ResourceLimits
from device.sandbox.seccomp import SyscallFilter
from singlecell.config import SANDBOX_LAYERS, Config
from singlecell.errors import ConfigError, SandboxError

#: every layer, in the order a kernel applies them (see device/sandbox/base.py): control groups
#: are joined before the filesystem layer hides them, the uid is dropped after the namespaces
#: are built, rlimits are set after it, and the system-call filter comes last
LAYER_TYPES: dict[str, type[SandboxLayer]] = {
    layer.name: layer for layer in (Identity, ResourceLimits, Network, Filesystem, SyscallFilter)
}
assert set(SANDBOX_LAYERS) == set(LAYER_TYPES) - {ResourceLimits.name}


def layer_settings(config: Config, work_root: str = "", hidden: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """The settings of every layer the config asks for, as JSON-able dicts keyed by name.
    ``work_root`` is where kernels' folders live; ``hidden`` adds paths kernels must not see
    (a Jupyter connection file, say): the data dir and the config file are hidden always."""
    wanted = set(config.sandbox_layers)
    first_uid, last_uid = config.kernel_uid_range
    settings: dict[str, dict[str, Any]] = {
        "identity": {"first_uid": first_uid, "last_uid": last_uid, "keep": config.uids_kept},
        "network": {"enabled": True, "keep": config.uids_kept},
        "filesystem": {
            "hide": [str(config.data_path), *([work_root] if work_root else []),
                     *([config.config_file] if config.config_file else []), *hidden],
            "disk_mb": config.disk_limit,
        },
        "resources": {
            "cpu_seconds": config.cpu_limit,
            "memory_mb": config.memory_limit,
            "file_size": config.file_size_limit,
            "open_files": config.open_files_limit,
            "processes": config.process_limit,
        },
        "syscalls": {},
    }
    return {name: value for name, value in settings.items() if name in wanted or name == "resources"}


def build_layers(settings: Mapping[str, Mapping[str, Any]]) -> list[SandboxLayer]:
    """The layers named in ``settings``, built, in application order."""
    unknown = set(settings) - set(LAYER_TYPES)
    if unknown:
        raise ConfigError(f"unknown sandbox layer(s) {', '.join(sorted(unknown))}; the layers are "
                          f"{', '.join(LAYER_TYPES)}")
    return [kind.from_settings(dict(settings[name])) for name, kind in LAYER_TYPES.items() if name in settings]


def report(config: Config, statuses: Sequence[LayerStatus]) -> list[LayerStatus]:
    """Every layer's status, the ones the config leaves out included (as off, and why)."""
    by_name = {s.name: s for s in statuses}
    out = []
    for name in LAYER_TYPES:
        if name in by_name:
            out.append(by_name[name])
        elif name == "network" and config.allow_network:
            out.append(LayerStatus(name, False, "turned off by the operator (--allow-network): cells "
                                   "can reach the network"))
        else:
            out.append(LayerStatus(name, False, f"left out by the operator (--sandbox {config.sandbox})"))
    return out


def require(config: Config, statuses: Sequence[LayerStatus]) -> None:
    """Raise :class:`SandboxError` if a layer the operator marked required is not active."""
    active = {s.name for s in statuses if s.active}
    missing = [name for name in config.required_layers if name not in active]
    if missing:
        why = {s.name: s.detail for s in report(config, statuses)}
        raise SandboxError("required sandbox layer(s) not active: " + "; ".join(
            f"{name}: {why.get(name, 'unknown')}" for name in missing) + ". Run `singlecell doctor` "
            "to see every layer, or change --sandbox-required.")
