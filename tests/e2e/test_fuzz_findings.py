"""What the first fuzz runs and the OpenAPI work found, each answered now with a 4xx that says
what to fix (each was a 500, a wrong answer or a missing header)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.servers import Server


def call(server: Server, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


@pytest.mark.parametrize("path", ["/watch?ids=0123456789abcdef0123456789abcdef:%C2%B2",
                                  "/api/snippets?page=%C2%B2"])
def test_a_unicode_digit_is_not_a_number(server: Server, path: str) -> None:
    status, _, body = call(server, "GET", path)
    assert status == 400 and error_code(body) == "bad_request", body  # "²".isdigit(), but int("²") fails


@pytest.mark.parametrize("path", ["/login", "/signup", "/service", "/kernel"])
def test_a_form_that_cannot_be_read_is_a_400(server: Server, path: str) -> None:
    status, _, body = call(server, "POST", path, b"code=1", {"Content-Type": "multipart/form-data"})
    assert status == 400, body
    assert b"the form could not be read" in body and b"boundary" in body


def test_a_path_no_route_matches_is_a_404_whatever_its_body(server: Server) -> None:
    malformed = b"--e4\r\n5.8--e4--\r\n"
    status, _, body = call(server, "POST", "/stop/not-an-id", malformed,
                           {"Content-Type": "multipart/form-data; boundary=e4"})
    assert status == 404 and error_code(body) == "not_found", body  # was tornado's 400 "Invalid body"


@pytest.mark.parametrize(("method", "path"), [("GET", "/permalink"), ("GET", "/api/kernels/x/interrupt"),
                                              ("POST", "/api/sessions/x"), ("GET", "/api/tokens/0123456789abcdef")])
def test_a_method_a_route_does_not_take_is_a_405(server: Server, method: str, path: str) -> None:
    status, _, body = call(server, method, path, b"{}" if method == "POST" else None)
    assert status == 405, body  # GET /permalink was a 500; the others acted as another route


def test_posting_to_a_sagecell_kernel_without_method_delete_is_a_400_not_a_new_kernel(server: Server) -> None:
    status, _, body = call(server, "POST", "/kernel/5c2245c9-ce3a-473f-9bea-d5192b5df9ab", b"",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and b"method=DELETE" in body, body


def test_sagecell_service_checks_code_as_eval_does(server: Server) -> None:
    status, _, body = call(server, "POST", "/service", json.dumps({"code": "x = '\ud800'"}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 400 and b"surrogate" in body, body  # reached the device, which failed on it


def test_a_page_asked_with_a_token_that_is_not_valid_is_an_error_page(server: Server) -> None:
    status, headers, body = call(server, "GET", "/library", headers={"Authorization": "Bearer not-a-token"})
    assert status == 401 and headers["Content-Type"].startswith("text/html"), body
    assert b"API token is not valid" in body and b"Log in" in body  # was an empty 401


@pytest.mark.parametrize("path", ["/permalink", "/service"])
def test_code_with_a_nul_is_refused_everywhere_code_is_taken(server: Server, path: str) -> None:
    status, _, body = call(server, "POST", path, json.dumps({"code": "x = 1\x00"}).encode(),
                           {"Content-Type": "application/json"})
    assert status == 400 and b"NUL" in body, body  # POST /permalink was a 500 on PostgreSQL
