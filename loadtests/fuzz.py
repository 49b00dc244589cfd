"""Fuzz a running server from its own OpenAPI document, with Schemathesis.

    python loadtests/fuzz.py                          # starts its own server (SQLite), 10 minutes
    python loadtests/fuzz.py --db postgresql://postgres@127.0.0.1:5432/test --minutes 30
    python loadtests/fuzz.py --url http://127.0.0.1:8888 --token <an API token> --minutes 5

Schemathesis reads ``/openapi.json`` and sends, to every operation, the document's examples, the
edge cases of each schema (the coverage phase: too long, too short, missing, wrong type) and then
random requests built from the schemas, until the time is spent, with an API token and a login
session (its cookie and XSRF token), so the routes behind either are reached too. Every answer is
checked:

- ``not_a_server_error``: no 5xx, except 503 with ``Retry-After``, which the document promises
  where the server sheds load (a full queue, a store that cannot be reached);
- ``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``: each answer is one the document describes, in every detail.

It prints what it tried (per operation, how many requests and which checks failed), each failure
with a ``curl`` command that reproduces it, and exits non-zero when anything failed.
``tests/e2e/test_fuzz.py`` runs the short version against real servers on SQLite and PostgreSQL,
and shows that it catches a planted 500.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.harness import start_server  # noqa: E402

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
#: phases: the document's examples, each schema's edge cases, then random requests until the time is up
PHASES = ("examples", "coverage", "fuzzing")


def schemathesis_command(url: str, seconds: int, workers: int = 2, seed: int | None = None,
                         extra: tuple[str, ...] = ()) -> list[str]:
    """The ``schemathesis run`` command line for the server at ``url``."""
    executable = Path(sys.executable).with_name("schemathesis")
    command = [str(executable) if executable.exists() else "schemathesis", "run", f"{url}/openapi.json",
               "--checks", ",".join(CHECKS), "--phases", ",".join(PHASES), "--max-time", str(seconds),
               "--workers", str(workers), "--request-timeout", "60", "--max-redirects", "0",
               "--suppress-health-check", "all", "--no-color", "--generation-database", "none",
               # an HTTP fuzzer cannot speak WebSocket: after an upgrade that succeeds (a kernel it
               # started, its token) it reads a connection it cannot parse, and calls that a server
               # error. The upgrade's refusals are tested in tests/e2e/test_kernel_api.py.
               "--exclude-path-regex", "/channels$"]
    if seed is not None:
        command += ["--seed", str(seed)]
    return [*command, *extra]


def fuzz(url: str, seconds: int, workers: int = 2, seed: int | None = None,
         extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run Schemathesis against ``url`` for about ``seconds``; its output and exit status. It runs
    in a folder of its own: it keeps a cache of failures (``.schemathesis/``) where it runs, and
    each run here starts clean."""
    with tempfile.TemporaryDirectory(prefix="fuzz-run-") as work:
        return subprocess.run(schemathesis_command(url, seconds, workers, seed, extra), capture_output=True,
                              text=True, timeout=seconds * 3 + 300, env={**os.environ, "NO_COLOR": "1"}, cwd=work)


PASSWORD = "a long enough password"


def api_token(data_dir: str, store: list[str]) -> str:
    """A new account's API token, made with the CLI, so the fuzzer also reaches the routes that
    need one (the library's writes, the Jupyter API with ``--require-token``)."""
    cli = [sys.executable, "-m", "singlecell"]
    where = ["--data-dir", data_dir, *store]
    subprocess.run([*cli, "user", "create", *where, "fuzzer"], input=PASSWORD + "\n", text=True,
                   check=True, capture_output=True, cwd=ROOT)
    made = subprocess.run([*cli, "token", "create", *where, "--user", "fuzzer"], text=True, check=True,
                          capture_output=True, cwd=ROOT)
    return made.stdout.strip().splitlines()[-1]


def login_headers(url: str, name: str = "fuzzer", password: str = PASSWORD) -> tuple[str, ...]:
    """Log in through the site's form, as a browser does, and return Schemathesis's ``--header``
    arguments that carry the login cookie and the XSRF token (double-submitted: the ``_xsrf``
    cookie and the ``X-XSRFToken`` header), so the fuzzer also reaches the cookie forms."""
    xsrf = secrets.token_hex(16)  # tornado takes a plain hex token as the cookie's value
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        connection.request("POST", "/login", urllib.parse.urlencode(
            {"name": name, "password": password, "_xsrf": xsrf, "next": "/account"}),
            {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"})
        answer = connection.getresponse()
        answer.read()
        cookies = [c.split(";", 1)[0] for c in answer.headers.get_all("Set-Cookie") or []]
    finally:
        connection.close()
    session = [c for c in cookies if c.startswith("singlecell_session=")]
    if answer.status != 303 or not session:
        raise RuntimeError(f"logging in as {name!r} answered {answer.status}, with cookies {cookies}")
    return ("--header", f"Cookie: {session[0]}; _xsrf={xsrf}", "--header", f"X-XSRFToken: {xsrf}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server to fuzz (default: start one)")
    parser.add_argument("--db", help="store URL for the server started here (default: SQLite in a temporary folder)")
    parser.add_argument("--minutes", type=float, default=10.0, help="time to spend (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="requests in flight (default 2)")
    parser.add_argument("--seed", type=int, help="Schemathesis's seed, to repeat a run")
    parser.add_argument("--token", help="an API token for --url's server (a server started here gets one made)")
    args = parser.parse_args()
    folder = None
    proc = None
    url = args.url
    try:
        if url is None:
            folder = tempfile.mkdtemp(prefix="fuzz-")
            flags = ["--db", args.db] if args.db else []
            proc, url = start_server(folder, 4, *flags)
            args.token = api_token(folder, flags)
            print(f"fuzzing a server started here: {url} (store {args.db or 'SQLite'}, logs in {folder})")
        extra: tuple[str, ...] = ("--header", f"Authorization: Bearer {args.token}") if args.token else ()
        if proc is not None:  # the account made here: its login session too, for the cookie forms
            extra += login_headers(url)
        result = fuzz(url, max(1, int(args.minutes * 60)), args.workers, args.seed, extra)
        print(result.stdout)
        print(result.stderr, file=sys.stderr)
        verdict = "nothing failed" if result.returncode == 0 else "FAILURES above"
        print(f"schemathesis exited {result.returncode}: {verdict}")
        return result.returncode
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if folder is not None and proc is not None and proc.returncode == 0:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
