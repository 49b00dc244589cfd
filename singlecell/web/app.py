"""``make_app``: the Tornado application, built from its parts; importing this does nothing."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import tornado.routing
import tornado.web
from tornado.log import access_log

from filestore.base import FileStore
from singlecell.accounts import Accounts
from singlecell.config import Config
from singlecell.library import Library
from singlecell.metrics import Metrics
from singlecell.store.base import Store
from singlecell.wakeup import Wakeups
from singlecell.web.accounts import account_routes
from singlecell.web.apidocs import apidocs_routes
from singlecell.web.batches import batch_routes
from singlecell.web.handlers import NotFoundHandler, Services, routes
from singlecell.web.kernels import kernel_routes
from singlecell.web.library import library_routes
from singlecell.web.sagecell import sagecell_routes
from singlecell.web.status import status_routes

log = logging.getLogger(__name__)


def asset_dir(name: str) -> Path:
    """``static`` or ``templates``: inside the installed package, or at the top of a checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / name
    return installed if installed.is_dir() else package.parent / name


def make_app(config: Config, store: Store, filestore: FileStore, wakeups: Wakeups | None = None,
             accounts: Accounts | None = None, library: Library | None = None,
             metrics: Metrics | None = None) -> tornado.web.Application:
    services = Services(config, store, filestore, wakeups, accounts, library, metrics)
    app = tornado.web.Application(
        [*routes(services), *batch_routes(services), *kernel_routes(services), *sagecell_routes(services),
         *account_routes({"services": services}), *library_routes({"services": services}),
         *apidocs_routes(services), *status_routes(services)],
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        static_path=str(asset_dir("static")),
        template_path=str(asset_dir("templates")),
        template_whitespace="all",  # the pages hold Python, whose indentation is its syntax
        compress_response=False,
        # the double-submit cookie of every form (tornado's XSRF); pages read the token, not scripts
        log_function=log_request,
        # kernel WebSockets (web/kernels.py): a ping every 30 s keeps an idle notebook's connection
        # open through proxies, and tells a client that went away from one that is only quiet
        websocket_ping_interval=30,
        websocket_ping_timeout=60,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Lax",
                            "secure": config.public_url.startswith("https:")},
    )
    app.settings["services"] = services
    return app


_SECRET_QUERY = re.compile(r"(?<=[?&]token=)[^&]*")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, without the API token a WebSocket's URL may carry (``?token=``,
    as Jupyter clients send it): logs are read by people who must not get it. And the request,
    by route, in the process's metrics."""
    status = handler.get_status()
    log_method = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    uri = _SECRET_QUERY.sub("[secret]", request.uri or "")
    log_method("%d %s %s (%s) %.2fms", status, request.method, uri, request.remote_ip, 1000.0 * request.request_time())
    services = handler.application.settings.get("services")
    if isinstance(services, Services):
        services.metrics.answered(route_of(handler), request.method or "", status, request.request_time())


def _routes_of(application: tornado.web.Application, handler_class: type) -> tuple[re.Pattern[str], ...]:
    known: dict[type, tuple[re.Pattern[str], ...]] = application.settings.setdefault("route_patterns", {})
    if handler_class not in known:
        known[handler_class] = tuple(
            rule.matcher.regex for rule in application.wildcard_router.rules
            if rule.target is handler_class and isinstance(rule.matcher, tornado.routing.PathMatches))
    return known[handler_class]


def route_of(handler: tornado.web.RequestHandler) -> str:
    """The pattern of the route that served the request (``/output/([0-9a-f]{32})$``), never its
    path: a metric's labels must stay few. ``unmatched`` for what no route served."""
    patterns = _routes_of(handler.application, type(handler))
    if len(patterns) == 1:
        return patterns[0].pattern
    for pattern in patterns:
        if pattern.match(handler.request.path):
            return pattern.pattern
    return "unmatched"


PRUNE_EVERY = 600.0  # seconds between two prunings of the limits' records


async def prune_quotas_forever(store: Store, interval: float = PRUNE_EVERY) -> None:
    """Forget rate states that caught up and CPU usage of long-gone days, so the limits' tables
    hold about one row per client active lately, not one per client ever seen."""
    while True:
        await asyncio.sleep(interval)
        try:
            store.prune_quotas(time.time())
        except Exception:
            log.exception("pruning the limits' records failed; trying again later")


async def expire_leases_forever(store: Store, notify: Callable[[str], None], interval: float,
                                metrics: Metrics | None = None) -> None:
    """Declare the requests of vanished devices lost, even when no device is left to do it."""
    while True:
        await asyncio.sleep(interval)
        try:
            lost = store.expire_leases()
        except Exception:
            log.exception("expiring leases failed; retrying")
            continue
        if lost:
            log.warning("declared %d requests lost: their device stopped answering", len(lost))
            if metrics is not None:
                metrics.lost.inc(len(lost))
            for request_id in lost:
                notify(request_id)  # this process's own waiters; other processes poll
