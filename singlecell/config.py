"""Every setting, in one place: typed, with a default and a help line.

A value comes from (first wins) the command line, the environment (``SINGLECELL_<NAME>``, e.g.
``SINGLECELL_TIME_LIMIT=10``), the config file (``--config FILE``, TOML, keys as the field
names), then the default. Components receive a :class:`Config` (or plain values from it) as
constructor arguments; nothing reads settings from a global.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from singlecell.errors import BadRequest, ConfigError
from singlecell.quotas import parse_rate

ENV_PREFIX = "SINGLECELL_"


def _setting(default: Any, help: str, *, commands: Sequence[str] = (), flag: str = "") -> Any:
    """A dataclass field carrying its help text and the subcommands that take it as a flag."""
    return field(default=default, metadata={"help": help, "commands": tuple(commands), "flag": flag})


SERVE = "serve"
WEB = "web"
DEVICE = "device"
DOCTOR = "doctor"
SERVERS = (SERVE, WEB)
STORES = (SERVE, WEB, DEVICE)
KERNEL_HOSTS = (SERVE, DEVICE, DOCTOR)
ADMIN = ("user", "token", "stats", "requests")  # the commands that read or manage the store from the command line
#: the isolation layers ``--sandbox`` may name (device/sandbox/registry.py builds them)
SANDBOX_LAYERS = ("identity", "network", "filesystem", "syscalls")


@dataclass(frozen=True)
class Config:
    # -- where --------------------------------------------------------------------------
    host: str = _setting("127.0.0.1", "address the web tier listens on", commands=SERVERS)
    port: int = _setting(8888, "port the web tier listens on", commands=SERVERS)
    cors_origins: str = _setting("*", "origins (scheme://host[:port], comma-separated) whose pages may call "
                                 "the API; * for any, without credentials", commands=SERVERS)
    data_dir: str = _setting("./singlecell-data", "folder for the SQLite store, the filestore and "
                             "the run sockets", commands=(*STORES, DOCTOR, *ADMIN))
    db: str = _setting("", "store URL: sqlite:///…, postgresql://…, mongodb://… (default: "
                       "sqlite:///DATA_DIR/singlecell.db)", commands=(*STORES, *ADMIN, DOCTOR))
    files: str = _setting("", "filestore URL: sqlite:///…, postgresql://…, dir:/path, mongodb://… (GridFS) "
                          "(default: sqlite:///DATA_DIR/files.db)", commands=(*STORES, DOCTOR))
    examples: bool = _setting(True, "load the example snippets into an empty library at start", commands=SERVERS)
    public_url: str = _setting("", "the site's public URL, like https://cells.example.org (cookies are Secure when "
                               "it is https)", commands=SERVERS)
    accel_redirect: str = _setting("", "behind nginx with a dir: filestore: the internal location (like /_files/) "
                                   "that serves the filestore's folder; /files/… then answers with "
                                   "X-Accel-Redirect and nginx sends the bytes", commands=SERVERS)
    work_dir: str = _setting("", "folder under which each kernel gets its empty working folder "
                             "(default: a fresh temporary folder)", commands=KERNEL_HOSTS)

    # -- kernels and limits -------------------------------------------------------------
    kernels: int = _setting(8, "cells run at once by this device", commands=KERNEL_HOSTS)
    ready_kernels: int = _setting(4, "kernels kept forked and waiting, so forking is off the "
                                  "request path", commands=KERNEL_HOSTS)
    metrics_port: int = _setting(0, "port on which the device serves its Prometheus metrics (/metrics) on "
                                 "--metrics-host; 0: none (a web process serves its own at /metrics)",
                                 commands=(SERVE, DEVICE))
    metrics_host: str = _setting("127.0.0.1", "address of the device's metrics port", commands=(SERVE, DEVICE))
    preload: str = _setting("numpy,matplotlib,ipywidgets", "modules the kernel template imports once, so every "
                            "kernel has them: names, comma-separated, and absolute paths of folders whose every "
                            "module is imported (one that fails to import stops the server at start)",
                            commands=KERNEL_HOSTS)
    time_limit: float = _setting(30.0, "wall-clock seconds a cell may run", commands=STORES)
    cpu_limit: int = _setting(30, "CPU seconds a cell may use (0: no limit)", commands=KERNEL_HOSTS)
    memory_limit: int = _setting(1024, "MB of memory a cell may allocate beyond the kernel's own "
                                 "(0: no limit)", commands=KERNEL_HOSTS)
    output_limit: int = _setting(1_000_000, "bytes of output a cell may produce; more is cut off "
                                 "with a notice", commands=KERNEL_HOSTS)
    max_queue: int = _setting(1000, "requests waiting for a kernel before new ones get 503",
                              commands=SERVERS)
    max_code_size: int = _setting(64 * 1024, "bytes of code per request", commands=SERVERS)
    max_upload_size: int = _setting(4 * 1024 * 1024, "bytes of all uploaded files of one request",
                                    commands=SERVERS)
    max_uploads: int = _setting(10, "uploaded files per request", commands=SERVERS)
    max_output_files: int = _setting(100, "files collected from one cell's folder",
                                     commands=KERNEL_HOSTS)
    max_output_file_size: int = _setting(16 * 1024 * 1024, "bytes per collected file (larger ones "
                                         "are skipped)", commands=KERNEL_HOSTS)

    # -- the sandbox (see device/sandbox/) ---------------------------------------------
    sandbox: str = _setting("all", "isolation layers to apply to kernels, comma-separated: identity, "
                            "network, filesystem, syscalls, or all or none (resource limits always "
                            "apply)", commands=KERNEL_HOSTS)
    sandbox_required: str = _setting("", "layers that must be active, or the server refuses to start "
                                     "(comma-separated, or all)", commands=KERNEL_HOSTS)
    allow_network: bool = _setting(False, "let cells reach the network (turns the network layer off)",
                                   commands=KERNEL_HOSTS)
    kernel_uids: str = _setting("200000-200999", "uids kernels run as when the server runs as root, "
                                "one per live kernel, FIRST-LAST", commands=KERNEL_HOSTS)
    # each uid a device has claimed keeps a lock file, control groups and (in the kernel template)
    # a network namespace for the next kernel of that uid: reused, they cost nothing per cell, and
    # bounded, they cannot pile up on a host that runs for months
    uid_cache: int = _setting(0, "kernel uids a device keeps claimed for reuse (as root), each with its "
                              "control groups and network namespace; when all are in use a new kernel waits "
                              "for an old one to be gone (0: twice --kernels, --ready-kernels and "
                              "--max-sessions together)", commands=KERNEL_HOSTS)
    disk_limit: int = _setting(100, "MB a cell may write to its folder and /tmp (a tmpfs of its own "
                               "when root; 0: no quota)", commands=KERNEL_HOSTS)
    process_limit: int = _setting(64, "processes and threads a cell may run at once (0: no limit)",
                                  commands=KERNEL_HOSTS)
    file_size_limit: int = _setting(64 * 1024 * 1024, "bytes of any one file a cell writes (0: no limit)",
                                    commands=KERNEL_HOSTS)
    open_files_limit: int = _setting(256, "files a cell may hold open at once", commands=KERNEL_HOSTS)

    # -- sessions: a cell whose widgets are still open keeps its kernel (see device/session.py)
    # 12: with the 8 cells of --kernels, 20 kernels of at most --memory-limit (1 GB) each fit in 24 GiB,
    # however much each session holds (an idle one holds about 9 MB of its own)
    max_sessions: int = _setting(12, "live sessions (kernels kept for open widgets) per device, apart from "
                                 "--kernels; at the cap the least recently used one is ended (0: none)",
                                 commands=KERNEL_HOSTS)
    max_sessions_per_client: int = _setting(8, "live sessions one client address may hold; past it "
                                            "POST /execute answers 429", commands=SERVERS)
    require_token: bool = _setting(False, "the compute API (/execute, /eval, /batch) and the Jupyter kernel API "
                                   "(/api/kernels) need an API token (Authorization: Bearer … or token …); "
                                   "without this flag a request without one may run cells and start kernels, "
                                   "which only requests without a token then see", commands=SERVERS)

    # -- quotas: per API token, and per client address without one (singlecell/quotas.py) --
    rate_limit: str = _setting("0", "requests a client may send to the compute and kernel APIs: a count per "
                               "period, like 5/s or 300/min, the count also the burst (0: no limit); a token's "
                               "own limits (singlecell token create --rate …) replace this and the two below",
                               commands=SERVERS)
    max_running: int = _setting(0, "cells a client may have queued or running at once (0: no limit)",
                                commands=SERVERS)
    cpu_per_day: float = _setting(0.0, "CPU seconds a client's cells may use per UTC day (0: no limit)",
                                  commands=SERVERS)

    # -- callbacks (singlecell/callbacks.py) ---------------------------------------------
    callback_allow: str = _setting("", "addresses and networks callbacks may reach although they are not "
                                   "public (loopback, private, link-local), comma-separated, like "
                                   "127.0.0.1,10.1.0.0/16", commands=SERVERS)
    callback_attempts: int = _setting(8, "times a callback is tried, with back-off (1 s, 2 s, 4 s, … at most "
                                      "10 min apart), before it is given up", commands=SERVERS)
    session_idle: float = _setting(300.0, "seconds a session lives with no input", commands=KERNEL_HOSTS)
    session_unread: float = _setting(60.0, "seconds a session lives with no client reading its output "
                                     "(a closed tab)", commands=KERNEL_HOSTS)
    session_lifetime: float = _setting(1800.0, "seconds a session lives at most", commands=KERNEL_HOSTS)

    config_file: str = _setting("", "the config file these settings were read from (set by --config)")

    # -- plumbing -----------------------------------------------------------------------
    lease_seconds: float = _setting(15.0, "a device's claim on a request lasts this long unless "
                                    "renewed; then the request is declared lost", commands=STORES)
    poll_interval: float = _setting(0.5, "fallback poll of the store when no wake-up arrives",
                                    commands=STORES)
    shutdown_grace: float = _setting(5.0, "seconds running cells get to finish at shutdown",
                                     commands=KERNEL_HOSTS)
    log_level: str = _setting("info", "debug, info, warning or error", commands=STORES)

    # -- derived ------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().absolute()

    @property
    def store_url(self) -> str:
        return self.db or f"sqlite:///{self.data_path / 'singlecell.db'}"

    @property
    def files_url(self) -> str:
        return self.files or f"sqlite:///{self.data_path / 'files.db'}"

    @property
    def max_body_size(self) -> int:
        """Bytes of request body the web tier reads: JSON escaping can grow code six-fold, and
        base64 grows uploads by a third."""
        return 6 * self.max_code_size + 2 * self.max_upload_size + 65536

    @property
    def allowed_origins(self) -> frozenset[str] | None:
        """The origins whose pages may call the API; ``None`` for any origin."""
        origins = _names(self.cors_origins)
        return None if origins == ["*"] else frozenset(o.rstrip("/") for o in origins)

    @property
    def run_dir(self) -> Path:
        """Sockets for wake-ups between the processes sharing this data dir."""
        return self.data_path / "run"

    @property
    def kernel_uid_range(self) -> tuple[int, int]:
        first, _, last = self.kernel_uids.partition("-")
        return int(first), int(last or first)

    @property
    def uids_kept(self) -> int:
        """How many kernel uids a device keeps: ``uid_cache``, or its default, within the range."""
        first, last = self.kernel_uid_range
        wanted = self.uid_cache or 2 * self._uids_needed
        return min(wanted, last - first + 1)

    @property
    def _uids_needed(self) -> int:
        # what a device may hold at once: cells running, kernels waiting ready, live sessions
        return self.kernels + min(self.ready_kernels, self.kernels) + self.max_sessions

    @property
    def sandbox_layers(self) -> list[str]:
        """The isolation layers asked for, in no particular order."""
        names = _names(self.sandbox)
        layers = list(SANDBOX_LAYERS) if names == ["all"] else [] if names == ["none"] else names
        return [name for name in layers if not (name == "network" and self.allow_network)]

    @property
    def required_layers(self) -> list[str]:
        names = _names(self.sandbox_required)
        return ["resources", *SANDBOX_LAYERS] if names == ["all"] else names

    @property
    def preload_modules(self) -> list[str]:
        return [m.strip() for m in self.preload.split(",") if m.strip()]

    @property
    def callback_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(name, strict=False) for name in _names(self.callback_allow)]

    def validate(self) -> Config:
        problems = []
        try:
            parse_rate(self.rate_limit)
        except BadRequest as exc:
            problems.append(f"rate_limit: {exc.message}")
        try:
            self.callback_networks  # noqa: B018 (parsed to be checked)
        except ValueError as exc:
            problems.append(f"callback_allow: {exc} (give addresses or networks, like 10.1.0.0/16)")
        for name in ("max_running", "cpu_per_day"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative (got {getattr(self, name)})")
        if self.callback_attempts < 1:
            problems.append(f"callback_attempts must be at least 1 (got {self.callback_attempts})")
        for name in ("kernels", "ready_kernels", "max_queue", "max_code_size", "output_limit"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("time_limit", "lease_seconds", "poll_interval"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive (got {getattr(self, name)})")
        for name in ("cpu_limit", "memory_limit", "max_uploads", "max_upload_size", "shutdown_grace"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative (got {getattr(self, name)})")
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1–65535 (got {self.port})")
        if self.log_level not in ("debug", "info", "warning", "error"):
            problems.append(f"log_level must be debug, info, warning or error (got {self.log_level!r})")
        for name in ("disk_limit", "process_limit", "file_size_limit"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative (got {getattr(self, name)})")
        if self.open_files_limit < 16:
            problems.append(f"open_files_limit must be at least 16 (got {self.open_files_limit})")
        try:
            first, last = self.kernel_uid_range
            if not 0 < first <= last < 2**32 - 1:
                raise ValueError
        except ValueError:
            problems.append(f"kernel_uids must be FIRST-LAST with 0 < FIRST <= LAST, like 200000-200999 "
                            f"(got {self.kernel_uids!r})")
        if self.uid_cache and self.uid_cache < self._uids_needed:
            problems.append(f"uid_cache must be 0 (automatic) or at least --kernels, --ready-kernels and "
                            f"--max-sessions together ({self._uids_needed}), or cells would wait for sessions "
                            f"to end (got {self.uid_cache})")
        for setting, allowed in (("sandbox", (*SANDBOX_LAYERS, "all", "none")),
                                 ("sandbox_required", ("resources", *SANDBOX_LAYERS, "all"))):
            names = _names(getattr(self, setting))
            unknown = [n for n in names if n not in allowed]
            if unknown or (len(names) > 1 and {"all", "none"} & set(names)):
                problems.append(f"{setting} takes layer names from {', '.join(allowed)} (got "
                                f"{getattr(self, setting)!r})")
        if self.public_url and not re.fullmatch(r"https?://[^/\s]+(/[^\s]*)?", self.public_url):
            problems.append(f"public_url is a URL like https://cells.example.org (got {self.public_url!r})")
        if self.accel_redirect and not (self.accel_redirect.startswith("/") and self.accel_redirect.endswith("/")):
            problems.append(f"accel_redirect is a location path that starts and ends with /, like /_files/ "
                            f"(got {self.accel_redirect!r})")
        origins = _names(self.cors_origins)
        if origins != ["*"] and any(not _ORIGIN.fullmatch(o) for o in origins):
            problems.append("cors_origins takes * or origins like https://example.org or http://localhost:8000, "
                            f"without a path (got {self.cors_origins!r})")
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems))
        return self

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_ORIGIN = re.compile(r"https?://[a-z0-9.\-\[\]:]+")


def _names(text: str) -> list[str]:
    return [n.strip().lower() for n in text.split(",") if n.strip()]


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


_KINDS: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": _to_bool}


def _convert(name: str, raw: Any, source: str) -> Any:
    kind = _KINDS[str(FIELDS[name].type)]
    if kind is _to_bool:
        try:
            return _to_bool(raw)
        except ValueError:
            raise ConfigError(f"{source}: {name} must be true or false, not {raw!r}") from None
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {name} must be a {kind.__name__}, not {raw!r}") from None


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add a flag for every setting ``command`` takes, plus ``--config``. Defaults stay unset
    (``None``) so that :func:`load` can tell a given flag from an absent one."""
    parser.add_argument("--config", metavar="FILE", help="a TOML file of settings")
    for f in dataclasses.fields(Config):
        if command not in f.metadata["commands"]:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default {f.default!r}; env {ENV_PREFIX}{f.name.upper()})"
        if str(f.type) == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=_KINDS[str(f.type)], default=None, help=help_text)


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None,
         **overrides: Any) -> Config:
    """Build a validated Config from flags, the environment, the config file and defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = getattr(args, "config", None) or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                from_file = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from None
        for key, raw in from_file.items():
            name = key.replace("-", "_")
            if name not in FIELDS:
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[name] = _convert(name, raw, f"config file {config_file}")
        values["config_file"] = str(Path(config_file).absolute())
    for name in FIELDS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _convert(name, environ[env_name], f"environment {env_name}")
    if args is not None:
        for name in FIELDS:
            given = getattr(args, name, None)
            if given is not None:
                values[name] = given
    values.update(overrides)
    return Config(**values).validate()
