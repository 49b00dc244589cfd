"""The ``singlecell`` command: serve, web, device and eval. It wires the parts together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from singlecell import config as settings
from singlecell.accounts.base import TokenLimits
from singlecell.config import Config
from singlecell.errors import BadRequest, ConfigError, SandboxError, SingleCellError
from singlecell.quotas import parse_rate
from singlecell.storage import open_storage

log = logging.getLogger("singlecell")


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


# -- web --------------------------------------------------------------------------------

async def run_web(config: Config, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    import tornado.httpserver

    from singlecell.accounts import open_accounts
    from singlecell.library import open_library
    from singlecell.library.examples import load_examples
    from singlecell.metrics import Metrics, timed
    from singlecell.wakeup import open_wakeups
    from singlecell.web.app import expire_leases_forever, make_app, prune_quotas_forever

    metrics = Metrics("web")
    store, files = open_storage(config)
    store = timed(store, metrics)
    metrics.watch(queue_depth=store.count_queued)
    accounts = open_accounts(config.store_url)
    library = open_library(config.store_url, files)
    if config.examples:
        load_examples(library)
    wakeups = open_wakeups(config.store_url, str(config.data_path), "web")
    await wakeups.start()
    app = make_app(config, store, files, wakeups, accounts, library, metrics)
    # routes that take a body stream it and set their own limit (BodyHandler, which answers 413
    # with a reason); this one only bounds what tornado reads of a body sent where none belongs
    server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=config.max_body_size)
    try:
        server.listen(config.port, config.host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.host}:{config.port} ({exc.strerror}); is another "
                          "server running there? Choose another --port") from None
    services = app.settings["services"]
    expiry = asyncio.ensure_future(expire_leases_forever(store, services.waiters.notify, config.lease_seconds / 2,
                                                         metrics))
    services.callbacks.start()
    pruning = asyncio.ensure_future(prune_quotas_forever(store))
    log.info("web tier listening on http://%s:%d/ (store %s)", config.host, config.port,
             _redact(config.store_url))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.stop()
        expiry.cancel()
        pruning.cancel()
        services.callbacks.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 2)
        wakeups.close()
        library.close()
        accounts.close()
        store.close()
        files.close()


# -- device -----------------------------------------------------------------------------

async def run_device(config: Config, stop: asyncio.Event) -> None:
    from device import service  # only here: the web tier never loads device/

    await service.run(config, stop)


# -- serve: both, one command -------------------------------------------------------------

def config_environment(config: Config) -> dict[str, str]:
    """The settings as SINGLECELL_* variables, to hand a child process the same Config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(settings.ENV_PREFIX)}
    for f in dataclasses.fields(config):
        env[settings.ENV_PREFIX + f.name.upper()] = str(getattr(config, f.name))
    return env


def run_doctor(config: Config) -> int:
    from device import service

    return service.doctor(config)


EXIT_CONFIG = 78  # a device that exits so is not restarted: its settings cannot work here


async def run_serve(config: Config, stop: asyncio.Event) -> None:
    from device import service

    service.require_sandbox(config)  # refuse at once, before anything listens
    open_storage(config)  # create the schema once, before two processes race to
    web_ready = asyncio.Event()
    web = asyncio.ensure_future(run_web(config, stop, web_ready))
    device: asyncio.subprocess.Process | None = None
    try:
        while not stop.is_set():
            # the device is its own process (and process group): the kernel template must
            # fork from a process without an event loop's threads, and Ctrl-C is ours to relay
            device = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "singlecell", "device", env=config_environment(config),
                start_new_session=True, stdin=asyncio.subprocess.DEVNULL)
            exited = asyncio.ensure_future(device.wait())
            await asyncio.wait({exited, asyncio.ensure_future(stop.wait()), web},
                               return_when=asyncio.FIRST_COMPLETED)
            if web.done():
                web.result()  # raises why the web tier stopped
                break
            if exited.done() and device.returncode == EXIT_CONFIG:
                raise ConfigError("the device cannot run with these settings; its error is above")
            if exited.done() and not stop.is_set():
                log.error("the device exited with code %s; starting a new one", device.returncode)
                await asyncio.sleep(1.0)
    finally:
        stop.set()
        if device is not None and device.returncode is None:
            device.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(device.wait(), config.shutdown_grace + 10)
            except TimeoutError:
                device.kill()
                await device.wait()
        await web


# -- eval: the client ---------------------------------------------------------------------

def run_eval(source: str, server: str, token: str | None = None) -> int:
    from singlecell.client import Client, ClientError
    from singlecell.summary import strip_ansi

    code = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    client = Client(server, token=token or None)
    color = sys.stdout.isatty()
    try:
        request_id = client.execute(code)
        status = "ok"
        for msg in client.messages(request_id):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out = sys.stderr if content.get("name") == "stderr" else sys.stdout
                out.write(content.get("text", ""))
                out.flush()
            elif kind in ("execute_result", "display_data"):
                data = content.get("data", {})
                if "text/plain" in data:
                    print(data["text/plain"])
                others = [mime for mime in data if mime != "text/plain"]
                if others:
                    print(f"[{', '.join(others)}]")
            elif kind == "error":
                status = "error"
                trace = "\n".join(content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"])
                print(trace if color else strip_ansi(trace), file=sys.stderr)
            elif kind == "extension" and content.get("msg_type") == "files":
                for f in content["content"]["files"]:
                    print(f"[file] {f['name']} ({f['size']} bytes): {client.url}{f['url']}")
        return 0 if status == "ok" else 1
    except ClientError as exc:
        print(f"singlecell: the server refused the cell: {exc.message} ({exc.status})", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"singlecell: cannot reach {server}: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()


# -- user, token: accounts --------------------------------------------------------------

def run_accounts(args: argparse.Namespace, config: Config) -> int:
    from singlecell.accounts import open_accounts

    store, files = open_storage(config)  # the accounts' tables are the store's: made or migrated here
    accounts = open_accounts(config.store_url)
    try:
        if args.command == "user":
            password = _read_password()
            user = accounts.create_user(args.name, password)
            print(f"created the account {user.name}")
            return 0
        if args.token_command == "limits":
            if not accounts.set_token_limits(args.token_id, _limits_of(args)):
                print(f"singlecell: no token has the id {args.token_id!r} (see `singlecell token list --user NAME`)",
                      file=sys.stderr)
                return 1
            print(f"token {args.token_id}: {_describe_limits(_limits_of(args))}")
            return 0
        found = accounts.user_named(args.user_name)
        if found is None:
            print(f"singlecell: no account is called {args.user_name!r}", file=sys.stderr)
            return 1
        if args.token_command == "list":
            for record in accounts.tokens(found.id):
                state = "revoked" if record.revoked is not None else "live"
                print(f"{record.id}  {state:7}  {_describe_limits(record.limits)}  {_safe(record.label)}")
            return 0
        limits = _limits_of(args)
        token, _ = accounts.create_token(found.id, args.label, limits if limits != TokenLimits() else None)
        print(token)
        return 0
    except SingleCellError as exc:
        print(f"singlecell: {exc.message}", file=sys.stderr)
        return 1
    finally:
        accounts.close()
        store.close()
        files.close()


def _limits_of(args: argparse.Namespace) -> TokenLimits:
    if args.rate is not None:
        parse_rate(args.rate)  # BadRequest, saying the format
    for name in ("max_running", "cpu_per_day"):
        if (getattr(args, name) or 0) < 0:
            raise BadRequest(f"--{name.replace('_', '-')} must not be negative")
    return TokenLimits(args.rate, args.max_running, args.cpu_per_day)


def _describe_limits(limits: TokenLimits) -> str:
    def shown(value: object) -> str:
        return "server's" if value is None else "none" if value in (0, "0") else str(value)
    return (f"rate {shown(limits.rate)}, max-running {shown(limits.max_running)}, "
            f"cpu-per-day {shown(limits.cpu_per_day)}")


def run_stats(args: argparse.Namespace, config: Config) -> int:
    """``singlecell stats``: the store's figures over the last minutes, as the status page shows them."""
    import datetime

    from singlecell.activity import MINUTE, minutes, window

    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.3g} s"

    def clock(moment: float) -> str:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%H:%M")

    store, files = open_storage(config)
    try:
        now = time.time()
        until = now - now % MINUTE
        since = until - args.minutes * MINUTE
        timings = store.timings(since)
        summary = window(timings, since, now)
        ended = ", ".join(f"{name} {count}" for name, count in sorted(summary.ended.items()))
        print(f"the last {args.minutes} minutes ({clock(since)} to {clock(now)} UTC), from {_redact(config.store_url)}")
        print(f"submitted {summary.submitted}; ended {sum(summary.ended.values())}{f' ({ended})' if ended else ''}; "
              f"waiting now {summary.waiting}, running now {summary.running}")
        print(f"\n{'':<12}{'p50':>10}{'p90':>10}{'p99':>10}")
        stages = (("queue wait", summary.queue_wait), ("run", summary.run), ("end to end", summary.end_to_end))
        for name, three in stages:
            print(f"{name:<12}" + "".join(f"{seconds(v):>10}" for v in three))
        print(f"\n{'minute':<8}{'ended':>7}{'p50':>10}{'p99':>10}{'waiting':>9}{'running':>9}")
        for m in minutes(timings, since, until):
            print(f"{clock(m.start):<8}{m.ended:>7}{seconds(m.p50):>10}{seconds(m.p99):>10}{m.waiting:>9}{m.running:>9}")
        return 0
    finally:
        store.close()
        files.close()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _safe(text: str) -> str:
    """A cell's text for a terminal: its control characters shown, not obeyed (a cell's output is
    a stranger's, and an escape sequence could rewrite the operator's screen)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _when(moment: float | None) -> str:
    import datetime

    return "–" if moment is None else datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime(
        "%Y-%m-%d %H:%M:%S")


def _since(text: str) -> float:
    """``15m``, ``2h``, ``1d``, ``90s`` ago, or an ISO 8601 moment (UTC unless it says)."""
    import datetime

    ago = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if ago:
        return time.time() - float(ago.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[ago.group(2)]
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a time ago (15m, 2h, 1d) nor a moment "
                          "(2026-12-05T10:00, UTC unless it says)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()


def _message_line(message: dict[str, Any]) -> str:
    """One stored message, in a line or a few."""
    kind, content = message.get("msg_type", "?"), message.get("content", {})
    if kind == "stream":
        return f"{content.get('name')}: {content.get('text', '')!r}"
    if kind in ("execute_result", "display_data"):
        data = content.get("data", {})
        plain = f" {str(data.get('text/plain'))[:200]!r}" if "text/plain" in data else ""
        return f"{', '.join(sorted(data))}{plain}"
    if kind == "error":
        return f"{content.get('ename')}: {content.get('evalue')}"
    if kind == "status":
        return str(content.get("execution_state"))
    if kind == "execute_reply":
        return str(content.get("status"))
    return json.dumps(content)[:300]


def run_requests(args: argparse.Namespace, config: Config) -> int:
    """``singlecell requests list|show``: what the store holds of requests, for operators."""
    from singlecell.store.base import Status

    store, files = open_storage(config)
    try:
        if args.requests_command == "list":
            status = None
            if args.status:
                try:
                    status = Status(args.status)
                except ValueError:
                    known = ", ".join(s.value for s in Status)
                    print(f"singlecell: --status {args.status!r} is not a status; one of {known}", file=sys.stderr)
                    return 2
            since = _since(args.since) if args.since else None
            records = store.list_requests(status, since, args.limit)
            print(f"{'id':<34}{'status':<9}{'submitted (UTC)':<21}{'waited':>8}{'ran':>8}  {'client':<16}code")
            for r in records:
                waited = "" if r.started is None else f"{r.started - r.created:.2f}"
                ran = "" if r.started is None or r.finished is None else f"{r.finished - r.started:.2f}"
                code = str(r.message.get("content", {}).get("code", ""))
                first = code.strip().splitlines()[0] if code.strip() else ""
                print(f"{r.id:<34}{r.status.value:<9}{_when(r.created):<21}{waited:>8}{ran:>8}  "
                      f"{_safe(r.client)[:16]:<16}{_safe(first)[:50]!s}")
            print(f"({len(records)} shown, newest first; at most {args.limit})")
            return 0
        record = store.get_request(args.id)
        if record is None:
            print(f"singlecell: no request has the id {args.id!r}", file=sys.stderr)
            return 1
        print(f"request  {record.id}\nstatus   {record.status.value}\nclient   {_safe(record.client)}\n"
              f"device   {_safe(record.device or '–')}\nsubmitted {_when(record.created)}\n"
              f"started  {_when(record.started)}\nended    {_when(record.finished)}\ntimeout  {record.timeout:g} s")
        whose = {"t": "an API token's", "u": "an account's (a login session)", "a": "an address's (no token)"}
        if record.quota_key:
            print(f"counted  {_safe(record.quota_key[:20])}… ({whose.get(record.quota_key[:1], '?')} limits)"
                  if len(record.quota_key) > 20 else
                  f"counted  {_safe(record.quota_key)} ({whose.get(record.quota_key[:1], '?')} limits)")
        print(f"cpu      {'–' if record.cpu is None else f'{record.cpu:.3f} s'}")
        callback = store.callbacks_of([record.id]).get(record.id)
        if callback is not None:
            print(f"callback {_safe(callback.url)}: {callback.state} after {callback.attempts} attempt(s)"
                  + (f"; last error: {_safe(callback.last_error)}" if callback.last_error else ""))
        if record.session is not None:
            state = "live" if record.session.live else f"ended ({record.session.reason})"
            print(f"session  {state}, kind {record.session.kind}")
        if record.linked_to:
            print(f"linked to {record.linked_to}")
        print("code:\n" + "\n".join("  " + _safe(line) for line in
                                     str(record.message.get("content", {}).get("code", "")).splitlines()))
        messages = store.get_messages(record.id, 0, 100_000)
        print(f"messages ({len(messages)}):")
        for m in messages:
            print(f"  {m.seq:>4} {m.message.get('msg_type', '?'):<15} {_safe(_message_line(m.message))}")
        stored = store.list_files(record.id)
        print(f"files ({len(stored)}):")
        for f in stored:
            print(f"  {_safe(f.name)}  {f.size} bytes  {f.content_type}  /files/{record.id}/{_safe(f.name)}")
        return 0
    finally:
        store.close()
        files.close()


def _read_password() -> str:
    """The first line of standard input; at a terminal, asked for twice without echo."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SingleCellError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


# -- kernelspec: the sandboxed kernel for Jupyter clients ----------------------------------

def run_kernelspec(args: argparse.Namespace) -> int:
    from singlecell import kernelspec

    if args.kernelspec_command == "install":
        prefix = sys.prefix if args.sys_prefix else args.prefix
        try:
            where = kernelspec.install(user=args.user, prefix=prefix, name=args.name)
        except OSError as exc:
            print(f"singlecell: cannot install the kernelspec: {exc}; try --user or --prefix P", file=sys.stderr)
            return 1
        print(f"installed the {args.name} kernelspec in {where}")
        return 0
    try:
        where = kernelspec.remove(args.name)
    except KeyError:  # jupyter_client's NoSuchKernel
        print(f"singlecell: no kernelspec named {args.name} is installed where Jupyter looks", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"singlecell: cannot remove the kernelspec: {exc}", file=sys.stderr)
        return 1
    print(f"removed the {args.name} kernelspec from {where}")
    return 0


def _add_kernelspec_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from singlecell.kernelspec import KERNEL_NAME

    text = f"install or remove the {KERNEL_NAME} Jupyter kernel: this sandboxed kernel, for Jupyter clients"
    actions = commands.add_parser("kernelspec", help=text, description=text).add_subparsers(
        dest="kernelspec_command", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="install the kernelspec (system-wide unless told where)")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user only")
    where.add_argument("--sys-prefix", action="store_true", help=f"into this Python's prefix ({sys.prefix})")
    where.add_argument("--prefix", metavar="P", help="under P/share/jupyter/kernels")
    remove = actions.add_parser("remove", help="remove the installed kernelspec")
    for action in (install, remove):
        action.add_argument("--name", default=KERNEL_NAME, help=f"the kernelspec's name (default {KERNEL_NAME})")


# -- main -------------------------------------------------------------------------------

def _redact(url: str) -> str:
    import re

    return re.sub(r"//([^:/@]+):[^@/]+@", r"//\1:***@", url)


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    unset = "(default: the server's --rate-limit, --max-running or --cpu-per-day)"
    parser.add_argument("--rate", help=f"requests per period, like 5/s or 300/min; 0: no limit {unset}")
    parser.add_argument("--max-running", type=int, help="cells queued or running at once; 0: no limit")
    parser.add_argument("--cpu-per-day", type=float, help="CPU seconds of its cells per UTC day; 0: no limit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singlecell", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("serve", "run everything on this host: the web tier, a device and its kernels"),
        ("web", "run only the web tier, against the store a device also uses"),
        ("device", "run only a device: claim requests from the store and run them on kernels"),
        ("doctor", "print which sandbox layers are active on this host, and why any is off"),
    ):
        settings.add_arguments(commands.add_parser(name, help=text, description=text), name)
    user = commands.add_parser("user", help="manage accounts of the snippet library",
                               description="create an account; the password is read from standard input")
    user_actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_actions.add_parser("create", help="create an account (password on stdin, or asked for)")
    create.add_argument("name", help="the account's name")
    settings.add_arguments(create, "user")
    token = commands.add_parser("token", help="make API tokens for scripts")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    make = token_actions.add_parser("create", help="print a new API token for an account, with limits of its own")
    make.add_argument("--user", required=True, dest="user_name", help="the account's name")
    make.add_argument("--label", default="command line", help="what the token is for")
    _add_limit_arguments(make)
    settings.add_arguments(make, "token")
    listing = token_actions.add_parser("list", help="an account's tokens: id, label, limits (never the token)")
    listing.add_argument("--user", required=True, dest="user_name", help="the account's name")
    settings.add_arguments(listing, "token")
    limits = token_actions.add_parser("limits", help="change a token's own limits (by its id, from token list)")
    limits.add_argument("token_id", metavar="ID", help="the token's id")
    _add_limit_arguments(limits)
    settings.add_arguments(limits, "token")
    requests = commands.add_parser("requests", help="list the requests in the store, or show one",
                                   description="what the store holds of requests: when each ran, on which "
                                               "device, every message and its files")
    request_actions = requests.add_subparsers(dest="requests_command", required=True, metavar="ACTION")
    listing = request_actions.add_parser("list", help="the newest requests, newest first")
    listing.add_argument("--status", help="only these: queued, running, done, error, timeout, aborted, lost")
    listing.add_argument("--since", help="submitted since: 15m, 2h, 1d ago, or a moment like 2026-12-05T10:00 (UTC)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    settings.add_arguments(listing, "requests")
    show = request_actions.add_parser("show", help="one request: when it ran, every message and its files")
    show.add_argument("id", help="the request's id")
    settings.add_arguments(show, "requests")
    stats = commands.add_parser("stats", help="print what the server did over the last minutes, from the store",
                                description="cells submitted and ended, by status; queue wait, run time and "
                                            "end-to-end percentiles; and each minute's figures")
    stats.add_argument("--minutes", type=int, default=15, help="how far back to look (default 15)")
    settings.add_arguments(stats, "stats")
    ev = commands.add_parser("eval", help="run a file of Python on a server and print what it produced")
    ev.add_argument("source", metavar="FILE", help="the code to run; - reads standard input")
    ev.add_argument("-s", "--server", default=os.environ.get("SINGLECELL_SERVER", "http://127.0.0.1:8888"),
                    help="the server's URL (default: $SINGLECELL_SERVER or http://127.0.0.1:8888)")
    ev.add_argument("--token", default=os.environ.get("SINGLECELL_TOKEN"),
                    help="an API token, for a server with --require-token or limits per token "
                         "(default: $SINGLECELL_TOKEN)")
    _add_kernelspec_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`singlecell requests list | head`): stop quietly, as a Unix tool
        # does, and let nothing flush into the closed pipe on the way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE: what a shell reports for a tool whose pipe closed


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "eval":
        return run_eval(args.source, args.server, args.token)
    if args.command == "kernelspec":
        return run_kernelspec(args)
    try:
        config = settings.load(args)
    except SingleCellError as exc:
        print(f"singlecell: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "doctor":
        return run_doctor(config)
    if args.command in ("user", "token"):
        return run_accounts(args, config)
    if args.command == "stats":
        return run_stats(args, config)
    if args.command == "requests":
        try:
            return run_requests(args, config)
        except ConfigError as exc:
            print(f"singlecell: {exc.message}", file=sys.stderr)
            return 2
    logging.basicConfig(level=config.log_level.upper(),
                        format=f"%(asctime)s {args.command}[%(process)d] %(levelname)s %(name)s: %(message)s")
    runner = {"serve": run_serve, "web": run_web, "device": run_device}[args.command]

    async def run() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await runner(config, stop)

    try:
        asyncio.run(run())
    except (ConfigError, SandboxError) as exc:
        print(f"singlecell: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except SingleCellError as exc:
        print(f"singlecell: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"singlecell: {exc}", file=sys.stderr)
        return 1
    return 0
