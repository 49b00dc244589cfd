"""Parsing a submitted request body: every bad input is refused with a reason."""

from __future__ import annotations

import base64
import json

import pytest

from singlecell.config import Config
from singlecell.errors import BadRequest, PayloadTooLarge
from singlecell.web.handlers import parse_submission, wants_text

CONFIG = Config(max_code_size=100, max_uploads=2, max_upload_size=10)


def parse(body: object, content_type: str = "application/json") -> tuple[str, dict[str, bytes], float, bool]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got = parse_submission(content_type, raw, CONFIG)
    return got.code, got.files, got.timeout, got.plain


def test_json_with_files_and_timeout() -> None:
    code, files, timeout, plain = parse({"code": "1", "files": {"a.txt": base64.b64encode(b"hi").decode()},
                                         "timeout": 5})
    assert (code, files, timeout, plain) == ("1", {"a.txt": b"hi"}, 5.0, False)


def test_plain_text_body_is_the_code_and_timeout_is_capped_by_the_server() -> None:
    assert parse(b"print(1)", "text/plain; charset=utf-8") == ("print(1)", {}, 30.0, True)
    assert parse({"code": "1", "timeout": 999})[2] == 30.0


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "not valid JSON"),
    ([1, 2], "must be a JSON object"),
    ({}, "no code"),
    ({"code": "  "}, "no code"),
    ({"code": 3}, "no code"),
    ({"code": "1", "extra": 1}, "unknown field"),
    ({"code": "1", "timeout": -1}, "timeout"),
    ({"code": "1", "timeout": True}, "timeout"),
    ({"code": "1", "files": []}, "must be an object"),
    ({"code": "1", "files": {"../x": ""}}, "bad upload name"),
    ({"code": "1", "files": {"x": "***"}}, "not valid base64"),
    ({"code": "1", "files": {"a": "", "b": "", "c": ""}}, "at most 2"),
    ({"code": "a\x00b"}, "NUL"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_bad_bodies_are_refused_with_a_reason(body: object, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        parse(body)


def test_unsupported_content_type_says_what_to_send() -> None:
    with pytest.raises(BadRequest, match="text/plain"):
        parse(b"code=1", "application/x-www-form-urlencoded")


def test_too_much_code_or_upload_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 100"):
        parse({"code": "x" * 101})
    with pytest.raises(PayloadTooLarge, match="limit is 10"):
        parse({"code": "1", "files": {"a": base64.b64encode(b"y" * 11).decode()}})


@pytest.mark.parametrize(("accept", "plain_body", "expected"), [
    ("*/*", True, True),
    ("*/*", False, False),
    ("text/plain", False, True),
    ("application/json", True, False),
    ("text/plain, application/json", False, True),
    ("application/json, text/plain", True, False),
])
def test_plain_text_answer_when_asked_or_when_the_body_was_plain(accept: str, plain_body: bool,
                                                                  expected: bool) -> None:
    assert wants_text(accept, plain_body) is expected
