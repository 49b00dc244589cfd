"""Schemathesis fuzzes real servers from their own OpenAPI document (``loadtests/fuzz.py`` runs the
long version): no 5xx but a 503 with ``Retry-After``, and every answer one the document
describes. And the run can fail: it finds a planted 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from loadtests.fuzz import api_token, fuzz, login_headers
from tests import postgres
from tests.servers import ROOT, Server

#: seconds of fuzzing per store: the examples, every schema's edge cases, then random requests
SECONDS = 75


def _verdict(output: str) -> str:
    return output[-12000:]  # the failures and the summary: what a reader needs to fix it


def fuzz_server(server: Server, store: Sequence[str]) -> None:
    token = api_token(str(server.data_dir), list(store))
    result = fuzz(server.url, SECONDS, extra=("--header", f"Authorization: Bearer {token}",
                                              *login_headers(server.url)))
    out = result.stdout + result.stderr
    assert result.returncode == 0, _verdict(out)
    tried = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert tried is not None and tried.group(1) == tried.group(2) and int(tried.group(1)) > 1000, _verdict(out)
    assert "Traceback" not in server.log_text(), server.log_tail()
    # the login session reached the cookie forms: the account form, past its XSRF check, answered
    # as logged in (without the session it is a 401)
    assert " 200 POST /account " in server.log_text(), server.log_tail()


@pytest.mark.timeout(SECONDS * 2 + 300)
def test_fuzzing_on_sqlite_finds_no_server_error_and_no_answer_the_document_lacks(
        start_server: Callable[..., Server]) -> None:
    fuzz_server(start_server("serve"), [])


@pytest.mark.postgres
@pytest.mark.timeout(SECONDS * 2 + 300)
def test_fuzzing_on_postgresql_finds_no_server_error_and_no_answer_the_document_lacks(
        start_server: Callable[..., Server]) -> None:
    with postgres.database("sc_fuzz") as url:
        fuzz_server(start_server("serve", "--db", url, "--files", url), ["--db", url])


@pytest.mark.timeout(300)
def test_the_fuzz_run_fails_on_a_planted_500(start_server: Callable[..., Server]) -> None:
    server = start_server("serve", program=[str(ROOT / "tests/e2e/planted_500.py")])
    result = fuzz(server.url, 20, extra=("--include-path", "/permalink"))
    assert result.returncode != 0, _verdict(result.stdout)
    assert "POST /permalink" in result.stdout and "Server error" in result.stdout, _verdict(result.stdout)
    assert "ZeroDivisionError: the planted bug" in server.log_text()
