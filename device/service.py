"""The device process as the CLI starts it (``singlecell device``, and the device half of
``singlecell serve``), and the sandbox report of ``singlecell doctor``.

This is the one module of ``device/`` the CLI (``singlecell/cli.py``) imports, and only inside
its command functions: the web tier never loads ``device``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tornado.httpserver
import tornado.web

from device.device import Device
from device.pool import KernelPool
from device.sandbox.base import LayerStatus
from device.sandbox.registry import build_layers, layer_settings, report, require
from device.workspace import enter_private_mounts
from singlecell.config import Config
from singlecell.errors import ConfigError, SingleCellError
from singlecell.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from singlecell.metrics import Metrics, timed
from singlecell.storage import open_storage
from singlecell.store.base import DeviceReport, Store
from singlecell.wakeup import describe_wakeups, open_wakeups

log = logging.getLogger("singlecell")


async def run(config: Config, stop: asyncio.Event) -> None:
    """Run a device until ``stop`` is set: claim requests, run them on a kernel pool, then
    drain (running cells get ``--shutdown-grace`` seconds)."""
    # first, while this process has one thread: kernels' tmpfs folders then vanish with us
    own_mounts = enter_private_mounts()
    metrics = Metrics("device")
    store, files = open_storage(config)
    store = timed(store, metrics)
    own_work_dir = not config.work_dir
    work_root = Path(config.work_dir or tempfile.mkdtemp(prefix="singlecell-kernels-"))
    work_root.chmod(0o711)
    pool = KernelPool(work_root=work_root, ready=min(config.ready_kernels, config.kernels),
                      preload=config.preload_modules,
                      layers=layer_settings(config, str(work_root.absolute())),
                      output_limit=config.output_limit, own_mounts=own_mounts)
    wakeups = open_wakeups(config.store_url, str(config.data_path), "device")
    metrics_server: tornado.httpserver.HTTPServer | None = None
    reporting: asyncio.Task[None] | None = None
    try:
        await pool.start()
        statuses = report(config, [LayerStatus(*status) for status in pool.layer_report])
        for status in statuses:
            log.log(logging.INFO if status.active else logging.WARNING, "sandbox %s: %s (%s)",
                    status.name, "on" if status.active else "OFF", status.detail)
        require(config, statuses)
        await wakeups.start()
        device = Device(config, store, files, pool, wakeups, metrics=metrics)
        metrics.watch(queue_depth=store.count_queued, ready=pool.ready_count,
                      busy=device.busy, sessions=lambda: len(device.sessions),
                      uids=lambda: len(pool.uids.held) if pool.uids is not None else 0)
        if config.metrics_port:  # after the template started: serving metrics adds no thread, but no need to risk it
            metrics_server = serve_metrics(metrics, config.metrics_host, config.metrics_port)
        log.info("device %s running %d kernels at once", device.name, config.kernels)
        reporting = asyncio.ensure_future(report_forever(config, store, device, pool, statuses))
        running = asyncio.ensure_future(device.run())
        await asyncio.wait({running, asyncio.ensure_future(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
        await device.stop(config.shutdown_grace)
        await running
    finally:
        if reporting is not None:
            reporting.cancel()
        if metrics_server is not None:
            metrics_server.stop()
        await pool.close()
        wakeups.close()
        store.close()
        files.close()
        if own_work_dir:
            shutil.rmtree(work_root, ignore_errors=True)


async def report_forever(config: Config, store: Store, device: Device, pool: KernelPool,
                         statuses: list[LayerStatus]) -> None:
    """Tell the store what this device is, every third of a lease: the status page lists the
    devices seen lately, their kernels and their sandbox layers."""
    started = time.time()
    host = socket.gethostname()
    layers = [(status.name, status.active, status.detail) for status in statuses]
    while True:
        try:
            store.report_device(DeviceReport(device.name, host, started, time.time(), config.kernels,
                                             device.busy(), pool.ready_count(), layers))
        except Exception as exc:  # the store is away: the next report will do
            log.warning("reporting this device to the store failed: %s", exc)
        await asyncio.sleep(config.lease_seconds / 3)


class _MetricsHandler(tornado.web.RequestHandler):
    def initialize(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.finish(self.metrics.exposition())


def serve_metrics(metrics: Metrics, host: str, port: int) -> tornado.httpserver.HTTPServer:
    """``GET /metrics`` of this device on ``host:port``, served by the device's own event loop."""
    app = tornado.web.Application([(r"/metrics", _MetricsHandler, {"metrics": metrics})], log_function=lambda _: None)
    server = tornado.httpserver.HTTPServer(app)
    try:
        server.listen(port, host)
    except OSError as exc:
        raise ConfigError(f"the device cannot serve its metrics on {host}:{port} ({exc.strerror}); "
                          "choose another --metrics-port") from None
    log.info("device metrics at http://%s:%d/metrics", host, port)
    return server


def check_sandbox(config: Config) -> list[LayerStatus]:
    """Every layer's status on this host for ``config``; probes fork, so call it while the
    process has one thread."""
    layers = build_layers(layer_settings(config, config.work_dir))
    return report(config, [layer.check() for layer in layers])


def require_sandbox(config: Config) -> None:
    """Raise :class:`~singlecell.errors.SandboxError` unless every layer ``--sandbox-required``
    names is active here."""
    require(config, check_sandbox(config))


def doctor(config: Config) -> int:
    """Print which sandbox layers are active on this host, and why any is off; 1 when a
    required one is not."""
    statuses = check_sandbox(config)
    width = max(len(s.name) for s in statuses)
    print(f"singlecell sandbox on this host (uid {os.geteuid()}):")
    for status in statuses:
        print(f"  {status.name:<{width}}  {'on ' if status.active else 'OFF'}  {status.detail}")
    storage_ok = describe_storage(config)
    preloaded = check_preload(config.preload_modules)
    print("\npreloaded into every kernel (--preload):" if preloaded else "\nnothing is preloaded (--preload is empty)")
    name_width = max((len(name) for name, _, _ in preloaded), default=0)
    for name, ok, detail in preloaded:
        print(f"  {name:<{name_width}}  {'ok' if ok else 'FAILED'}  {detail}")
    try:
        require(config, statuses)
    except SingleCellError as exc:
        print(f"\n{exc.message}")
        return 1
    off = [s.name for s in statuses if not s.active]
    print(f"\nrequired: {', '.join(config.required_layers) or 'none'}; "
          + (f"off: {', '.join(off)}" if off else "every layer is on"))
    if not all(ok for _, ok, _ in preloaded):
        print("a preload module does not import: the server would refuse to start")
        return 1
    if not storage_ok:
        print("the store or the filestore cannot be reached: the server would not serve")
        return 1
    return 0


def describe_storage(config: Config) -> bool:
    """Print the store and the filestore in use, each with its server's version (asked of it);
    False when one cannot be reached."""
    print("\nstorage:")
    ok = True
    from filestore import FileStoreError, open_filestore
    from singlecell.store import open_store

    try:  # opened, not made: doctor changes nothing
        store, files = open_store(config.store_url), open_filestore(config.files_url)
    except (SingleCellError, FileStoreError) as exc:
        print(f"  cannot open: {getattr(exc, 'message', exc)}")
        return False
    for role, part in (("store", store), ("filestore", files)):
        try:
            said = part.describe()
        except Exception as exc:  # unreachable, refused, misconfigured: say so, as doctor does of layers
            said, ok = f"UNREACHABLE ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", False
        print(f"  {role:<10} {said}")
    if ok:
        print(f"  {'wake-ups':<10} {describe_wakeups(config.store_url, config.poll_interval)}")
    store.close()
    files.close()
    return ok


_PRELOAD_CHECK = """
import json, sys
from device.kernel import PreloadError, preload_names
out = []
try:
    names = preload_names(json.loads(sys.argv[1]))
except PreloadError as exc:
    print(json.dumps([["--preload", False, str(exc)]])); sys.exit()
for name in names:
    try:
        module = __import__(name)
        out.append([name, True, str(getattr(module, "__version__", "") or getattr(module, "__file__", "") or "")])
    except BaseException as exc:
        out.append([name, False, f"{type(exc).__name__}: {exc}"])
print(json.dumps(out))
"""


def check_preload(preload: list[str]) -> list[tuple[str, bool, str]]:
    """Each module ``--preload`` names (a folder's, one by one): whether it imports, and its
    version (or file), or why not. In a new Python process, as the template would import them."""
    if not preload:
        return []
    done = subprocess.run([sys.executable, "-c", _PRELOAD_CHECK, json.dumps(preload)], capture_output=True,
                          text=True, timeout=120, cwd=str(Path(__file__).resolve().parents[1]))
    try:
        return [(str(n), bool(ok), str(d)) for n, ok, d in json.loads(done.stdout.strip().splitlines()[-1])]
    except (ValueError, IndexError):
        return [("--preload", False, (done.stderr.strip().splitlines() or ["the check did not run"])[-1])]
