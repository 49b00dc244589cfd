"""Which sandbox layers exist, their settings from a :class:`~singlecell.config.Config`, and
building them by name. The device sends the settings (plain JSON) to its kernel template, which
builds the layers with :func:`build_layers`; the standalone Jupyter kernel does the same."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from device.sandbox.base import SandboxLayer
from device.sandbox.resources import ResourceLimits
from singlecell.config import Config
from singlecell.errors import ConfigError

#: every layer, in the order a kernel applies them
LAYER_TYPES: dict[str, type[SandboxLayer]] = {ResourceLimits.name: ResourceLimits}


def layer_settings(config: Config) -> dict[str, dict[str, Any]]:
    """The settings of every layer, as JSON-able dicts keyed by layer name."""
    return {"resources": {
        "cpu_seconds": config.cpu_limit,
        "memory_mb": config.memory_limit,
        "file_size": max(config.max_output_file_size, 256 * 1024 * 1024),
        "open_files": 1024,
    }}


def build_layers(settings: Mapping[str, Mapping[str, Any]]) -> list[SandboxLayer]:
    """The layers named in ``settings``, built, in application order."""
    unknown = set(settings) - set(LAYER_TYPES)
    if unknown:
        raise ConfigError(f"unknown sandbox layer(s) {', '.join(sorted(unknown))}; the layers are "
                          f"{', '.join(LAYER_TYPES)}")
    return [kind.from_settings(dict(settings[name])) for name, kind in LAYER_TYPES.items() if name in settings]
