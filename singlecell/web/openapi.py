"""The OpenAPI 3.1 document of every HTTP route the Tornado app serves, as the handlers behave.

:func:`document` builds it as a plain, JSON-serialisable dict (``/openapi.json`` serves it);
:func:`paths_and_methods` lists its operations for a route-coverage test, and
:func:`tornado_routes` names the Tornado route regexes behind each documented path (each path
item carries them as ``x-tornado-routes``; together they are every route of the app). Nothing
is built at import.

How the Tornado routes map to the documented paths:

- One path per route, its groups named: ``/output/({REQUEST_ID})`` is ``/output/{request_id}``,
  and a parameter's ``pattern`` is the route's regex, anchored.
- Trailing-slash variants (``/api/?``, ``/api/kernels/([^/]+)/?``, ``/kernel/?()``, …) are
  documented once, without the slash.
- A route that serves several shapes is split into the paths clients use:
  ``/api/kernels/([^/]+)/(interrupt|restart)/?`` is ``…/interrupt`` and ``…/restart`` (any other word is a
  404); ``/s/{id}/(fork|comments|rating|delete|related|thumbnail)`` is six form paths;
  ``/s/{id}()/raw/(.+)`` and ``/s/{id}()\\.zip`` (empty revision group) are the head's files.
- Catch-alls that only refuse are folded into the path they guard: ``/c/([^/]*)`` (a 404 page
  for an id that is not a permalink's) into ``/c/{permalink_id}``, ``/output/([^/]+)`` (a JSON
  404) into ``/output/{request_id}``.
- Tornado adds ``/static/(.*)``, ``/(favicon\\.ico)`` and ``/(robots\\.txt)`` for ``static_path``;
  ``singlecell/web/apidocs.py`` adds ``/openapi\\.json`` and ``/api/docs/?``.
- Not documented, on purpose: ``OPTIONS`` (every handler but the WebSockets' and the static
  files' answers the CORS preflight with 204) and ``HEAD`` of static files, both described in
  ``info``; ``GET /logout`` (405: logging out is a form's ``POST``); and the ``POST``/``PUT``
  every ``BodyHandler`` has, which answer 405 where the route takes neither. Any other method
  has no handler method and gets Tornado's 405, as JSON ``Error``.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import singlecell
from singlecell.errors import (
    BadRequest,
    CallbackRefused,
    Conflict,
    Forbidden,
    KernelUnavailable,
    NotAllowed,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    QuotaExceeded,
    SessionEnded,
    SingleCellError,
    StillRunning,
    StoreUnavailable,
    TooManyRequests,
    TooManySessions,
    Unauthorized,
)
from singlecell.library.model import MAX_COMMENT, MAX_TAGS, MAX_TITLE, REVISION_ID, SNIPPET_ID
from singlecell.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from singlecell.sessions import SESSION_ENDS
from singlecell.store.base import Status
from singlecell.summary import EVAL_STATUS
from singlecell.web.batches import MAX_CELLS
from singlecell.web.handlers import (
    INPUT_BODY_LIMIT,
    INPUT_TYPES,
    MAX_WAIT,
    MAX_WATCHED,
    PAGE_SIZE,
    PERMALINK_ID,
    REQUEST_ID,
    SESSION_COOKIE,
    SESSION_RETRY_AFTER,
    STOP_BODY_LIMIT,
)
from singlecell.web.kernels import KERNEL_NAME, RESTART_WAIT
from singlecell.web.library import COMMENTS_PER_MINUTE
from singlecell.web.library import PAGE_SIZE as LIBRARY_PAGE_SIZE
from singlecell.web.sagecell import MAX_SERVICE_CODE, SERVICE_TIMEOUT
from singlecell.wire import V1_PROTOCOL

Json = dict[str, Any]

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# route regexes that are not constants of the handlers' modules
KERNEL_ID = r"[^/]+"  # the routes take anything; only a kernel's UUID (or its 32 hex digits) is found
TOKEN_ID = r"[0-9a-f]{16}"
SHA256 = r"[0-9a-f]{64}"
ANY_PATH = r".+"  # slashes included: a file in a folder

#: the errors a handler raises on purpose, by their code; their status comes with them
_ERRORS: tuple[type[SingleCellError], ...] = (
    BadRequest, Unauthorized, Forbidden, NotAllowed, NotFound, Conflict, SessionEnded, PayloadTooLarge,
    TooManyRequests, TooManySessions, QueueFull, StoreUnavailable, KernelUnavailable, StillRunning, QuotaExceeded,
    CallbackRefused)
# the errors that carry Retry-After (handlers.set_retry_after): JSON errors, error pages and WebSockets
_RETRY_CODES = frozenset(e.code for e in (QueueFull, TooManyRequests, TooManySessions, StoreUnavailable,
                                          QuotaExceeded))
_WHY: dict[str, str] = {
    BadRequest.code: "the request is not one this route takes; the message says what to fix",
    Unauthorized.code: "no valid credentials",
    Forbidden.code: "a POST from a page of an origin that `--cors-origins` does not list; refused before "
                    "anything is stored",
    NotAllowed.code: "the account may not do this",
    NotFound.code: "not found",
    Conflict.code: "it exists already",
    SessionEnded.code: "the session is not live",
    PayloadTooLarge.code: "too large: the body, or what it holds, passes a limit",
    TooManyRequests.code: "a rate limit; retry after `Retry-After` seconds",
    TooManySessions.code: "the client's address holds `--max-sessions-per-client` live sessions; retry after "
                          f"`Retry-After` ({SESSION_RETRY_AFTER}) seconds, or stop one",
    QueueFull.code: "more than `--max-queue` requests wait; retry after `Retry-After` seconds",
    QuotaExceeded.code: "the caller (its API token, else its address) is past one of its limits, named by the "
                        "error's `limit`: `rate` (`--rate-limit`), `max_running` (cells queued or running at once) "
                        "or `cpu_per_day` (CPU seconds of the UTC day); nothing was stored, retry after "
                        "`Retry-After` seconds",
    CallbackRefused.code: "`callback_url` is not an http(s) URL with a host, holds a user name or password, or its "
                          "host resolves to an address callbacks may not reach (loopback, private, link-local, "
                          "metadata, reserved) and `--callback-allow` does not list",
    StoreUnavailable.code: "the store cannot be reached; nothing was done, retry after `Retry-After` seconds",
    KernelUnavailable.code: "no kernel could be started (no `Retry-After`)",
    StillRunning.code: "the cell did not finish within its time limit plus 60 s of queueing; it goes on, and "
                       "`/output/{id}` (named in the message) follows it",
}
_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
                413: "Content Too Large", 429: "Too Many Requests", 503: "Service Unavailable",
                504: "Gateway Timeout"}

# the usual groups of codes, to keep the operations short
_STORE = StoreUnavailable.code
_BODY = (Forbidden.code, PayloadTooLarge.code)  # every POST of a BodyHandler: origin check, body limit
_KERNEL_START = (Unauthorized.code, TooManySessions.code, QuotaExceeded.code, QueueFull.code, KernelUnavailable.code,
                 StillRunning.code)


# -- small builders -------------------------------------------------------------------------------

def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: Json, required: tuple[str, ...] | None = None, *, closed: bool = False,
         description: str | None = None) -> Json:
    """An object schema; ``required`` defaults to every property (the handlers write them all)."""
    schema: Json = {"type": "object", "properties": properties,
                    "required": list(properties if required is None else required)}
    if closed:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


def _scalar(kind: str, description: str | None, more: Json) -> Json:
    schema: Json = {"type": kind, **more}
    if description:
        schema["description"] = description
    return schema


def _str(description: str | None = None, **more: Any) -> Json:
    return _scalar("string", description, more)


def _int(description: str | None = None, **more: Any) -> Json:
    return _scalar("integer", description, more)


def _num(description: str | None = None, **more: Any) -> Json:
    return _scalar("number", description, more)


def _anchored(regex: str) -> str:
    """A route's group as a JSON Schema pattern: Tornado matches the whole path segment."""
    return f"^{regex}$"


def _json(schema: Json, example: Any = None) -> Json:
    media: Json = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _response(description: str, content: Json | None = None, headers: Json | None = None) -> Json:
    answer: Json = {"description": description}
    if headers:
        answer["headers"] = headers
    if content:
        answer["content"] = content
    return answer


def _ok(description: str, schema: Json, example: Any = None, headers: Json | None = None) -> Json:
    return _response(description, _json(schema, example), headers)


def _header(description: str, schema: Json | None = None) -> Json:
    return {"description": description, "schema": schema or {"type": "string"}}


def _no_content(description: str) -> Json:
    return _response(description)


def _html(description: str) -> Json:
    return _response(description, {"text/html": {"schema": {"type": "string"}}})


def _redirect(description: str) -> Json:
    return _response(description, headers={"Location": _header("where to go")})


_RETRY_AFTER = _header("seconds to wait before trying again", {"type": "integer", "minimum": 1})


def _error_responses(*codes: str, why: dict[str, str] | None = None, html: bool = False,
                     retry_after: bool = True) -> Json:
    """The error answers of an operation, one per status, from the error ``codes`` it can give
    (singlecell/errors.py): each the shared JSON ``Error`` (its codes in the description and in
    ``x-error-codes``), or, for pages (``html``), the error page. ``why`` says more than the
    default of a code."""
    status_of = {e.code: e.status for e in _ERRORS}
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(status_of[code], []).append(code)
    said = {**_WHY, **(why or {})}
    answers: Json = {}
    for status, group in sorted(by_status.items()):
        text = "; ".join(f"`{code}`: {said[code]}" for code in group)
        headers = ({"Retry-After": _RETRY_AFTER}
                   if retry_after and any(code in _RETRY_CODES for code in group) else None)
        if not html:
            answers[str(status)] = _response(f"{_STATUS_TEXT[status]}. {text}", _json(_ref("Error")), headers)
        else:
            content: Json = {"text/html": {"schema": {"type": "string"}}}
            if status == 413:
                # BodyHandler answers a body it is still receiving with JSON, before any page exists
                content.update(_json(_ref("Error")))
                text += " (JSON when the body passed the limit as it streamed in; an error page otherwise)"
            elif status == 404:
                # a path parameter not of the route's shape matches no route: the default JSON 404
                content.update(_json(_ref("Error")))
                text += " (JSON when a path parameter does not have the shape the route takes: no page matched)"
            answers[str(status)] = _response(f"{_STATUS_TEXT[status]}: an error page. {text}", content, headers)
        answers[str(status)]["x-error-codes"] = group  # machine-readable, for fuzzers and tests
    return answers


def _path_param(name: str, regex: str, description: str, example: str) -> Json:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": _anchored(regex)}, "example": example}


def _query(name: str, schema: Json, description: str, *, required: bool = False, example: Any = None) -> Json:
    param: Json = {"name": name, "in": "query", "required": required, "description": description, "schema": schema}
    if example is not None:
        param["example"] = example
    return param


def _op(operation_id: str, summary: str, tag: str, responses: Json, *, description: str | None = None,
        parameters: list[Json] | None = None, body: Json | None = None,
        security: list[Json] | None = None) -> Json:
    operation: Json = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        operation["description"] = description
    operation["parameters"] = parameters or []
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = dict(sorted(responses.items()))  # by status, as people read them
    if security is not None:
        operation["security"] = security
    return operation


def _path(route: str, parameters: list[Json] | None = None, *, also: tuple[str, ...] = (),
          **operations: Json) -> Json:
    """A path item: its operations by method, the path parameters they share, and the Tornado
    route regexes that serve it (``x-tornado-routes``, for :func:`tornado_routes`): ``route``,
    then those folded into it (``also``)."""
    item: Json = {"x-tornado-routes": [route, *also]}
    if parameters:
        item["parameters"] = parameters
    item.update(operations)
    return item


def _body(content: Json, description: str, *, required: bool = True) -> Json:
    return {"description": description, "required": required, "content": content}


def _form(schema: Json, *, multipart: bool = False) -> Json:
    content: Json = {"application/x-www-form-urlencoded": {"schema": schema}}
    if multipart:
        content["multipart/form-data"] = {"schema": schema}
    return content


# who may call what: the names are those of components.securitySchemes
_NONE: Json = {}
# Services.identify: with ?token= (_JUPYTER), and without (_OWNER: cells)
_JUPYTER: list[Json] = [{"jupyterToken": []}, {"bearerToken": []}, {"tokenQuery": []}, _NONE]
_OWNER: list[Json] = [_NONE, {"jupyterToken": []}, {"bearerToken": []}]
_ACCOUNT: list[Json] = [{"bearerToken": []}, {"sessionCookie": []}]
_ACCOUNT_WRITE: list[Json] = [{"bearerToken": []}, {"sessionCookie": [], "xsrfCookie": [], "xsrfHeader": []}]
_PAGE: list[Json] = [_NONE, {"sessionCookie": []}]  # pages show who is logged in
_FORM: list[Json] = [{"sessionCookie": [], "xsrfCookie": []}]  # with the form's _xsrf field
_XSRF_FORM: list[Json] = [{"xsrfCookie": []}]  # sign-up and log-in: no account yet, still the form's token
_PUBLIC: list[Json] = []  # no credentials are read


def _xsrf_field() -> Json:
    return _str("the form's XSRF token: the value of the `_xsrf` cookie (pages put it in every form)")


# -- examples (from a real server) ----------------------------------------------------------------

_EXAMPLE_ID = "4f0c9a3b2e1d4c5b8a7f6e5d4c3b2a19"
_EXAMPLE_KERNEL = "4f0c9a3b-2e1d-4c5b-8a7f-6e5d4c3b2a19"
_EXAMPLE_SNIPPET = "bj2mujd7df"
_EXAMPLE_REVISION = "divbqujeuo6zltlx2bsa"


def _example_message(msg_type: str, content: Json) -> Json:
    header = {"msg_id": "9d1e0c7a5b3f4e2d8c6a4b2f0e1d3c5a", "msg_type": msg_type,
              "session": "2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b", "username": "singlecell",
              "date": "2025-01-01T12:00:00.123456+00:00", "version": "5.3"}
    parent = {"msg_id": _EXAMPLE_ID, "msg_type": "execute_request", "session": "2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b",
              "username": "127.0.0.1", "date": "2025-01-01T12:00:00.012345+00:00", "version": "5.3"}
    return {"header": header, "parent_header": parent, "metadata": {}, "content": content,
            "msg_type": msg_type}


# -- components -----------------------------------------------------------------------------------

def _schemas() -> Json:
    request_id = _str("a request's id: 32 lowercase hex digits", pattern=_anchored(REQUEST_ID))
    kernel_id = _str("a kernel's id: its request's id written as a UUID", format="uuid")
    mime_bundle = {"type": "object", "description": "a MIME bundle: MIME type to data (text, or base64 for images)",
                   "additionalProperties": True}
    status = _str("the request's status", enum=[s.value for s in Status])
    snippet_id = _str("a snippet's id", pattern=_anchored(SNIPPET_ID))
    revision_id = _str("a revision's id (it names its content)", pattern=_anchored(REVISION_ID))
    url = _str(format="uri")
    when = _num("seconds since the epoch")
    kernel_name = _str(const=KERNEL_NAME)
    return {
        "Error": _obj({"error": _obj({"code": _str("machine-readable: what went wrong"),
                                      "message": _str("for people: what to fix"),
                                      "limit": _str("`limit_exceeded` only: which limit",
                                                    enum=["rate", "max_running", "cpu_per_day"]),
                                      "retry_after": _int("`limit_exceeded` only: `Retry-After`", minimum=1)},
                                     ("code", "message"))},
                      description="every error of the JSON routes"),
        # -- compute
        "Submission": _obj({
            "code": _str("the Python to run: not blank, no NUL, at most `--max-code-size` bytes (64 KiB) in UTF-8",
                         minLength=1),
            "files": {"type": ["object", "null"], "additionalProperties": _str(contentEncoding="base64"),
                      "description": "uploads put in the kernel's folder: name (a relative path) to base64 content; "
                                     "at most `--max-uploads` (10) files and `--max-upload-size` bytes (4 MiB)"},
            "timeout": _num("seconds the cell may run; at most `--time-limit`, which is also the default",
                            exclusiveMinimum=0),
            "snippet": {"type": ["string", "null"], "pattern": _anchored(f"{SNIPPET_ID}(@{REVISION_ID})?"),
                        "description": "a snippet of the library, `<id>` or `<id>@<revision>`: its files join the "
                                       "uploads, and a one-file snippet's Python file runs first"},
            "session": {"type": ["string", "null"], "pattern": _anchored("[0-9a-f-]{32,36}"),
                        "description": "a linked cell: the live kernel (from `POST /api/kernels`, or the `session` "
                                       "of the first linked cell's answer) to run in; no `files`, `snippet` or "
                                       "`linked` with it"},
            "linked": {"type": "boolean", "default": False,
                       "description": "the first of linked cells: its kernel stays, as a kernel of the API, and the "
                                      "answer's `session` names it"},
            "callback_url": _callback_url("`/execute` only (an `/eval` answers with the summary itself): "),
        }, ("code",), closed=True, description="a cell to run"),
        "BatchSubmission": _obj({
            "cells": {"type": "array", "minItems": 1, "maxItems": MAX_CELLS, "items": _obj({
                "code": _str("as a `Submission`'s", minLength=1),
                "files": {"type": ["object", "null"], "additionalProperties": _str(contentEncoding="base64"),
                          "description": "as a `Submission`'s"},
                "timeout": _num("as a `Submission`'s", exclusiveMinimum=0),
            }, ("code",), closed=True)},
            "callback_url": _callback_url(""),
        }, ("cells",), closed=True, description=f"1 to {MAX_CELLS} cells, queued together"),
        "BatchAnswer": _obj({"id": request_id | {"description": "the batch's id"},
                             "ids": {"type": "array", "items": request_id,
                                     "description": "the cells' request ids, in their order"},
                             "batch_url": url | {"description": "`/batch/{id}`"}}),
        "BatchState": _obj({
            "id": request_id | {"description": "the batch's id"},
            "total": _int(minimum=1), "ended": _int("cells that reached a terminal status", minimum=0),
            "cells": {"type": "array", "items": _obj({
                "id": request_id,
                "status": _str(enum=[s.value for s in Status]),
                "output_url": url,
                "callback": _obj({"state": _str(enum=["pending", "delivered", "failed"]),
                                  "attempts": _int(minimum=0),
                                  "last_error": {"type": ["string", "null"]}},
                                 description="with a `callback_url` only"),
            }, ("id", "status", "output_url"))},
        }),
        "EvalAnswer": _obj({
            "id": request_id,
            "status": _str("how the cell ended", enum=sorted(set(EVAL_STATUS.values()))),
            "stdout": _str(), "stderr": _str(),
            "result": _nullable(mime_bundle | {"description": "the `execute_result`'s data"}),
            "displays": {"type": "array", "items": mime_bundle, "description": "every `display_data`'s data"},
            "error": _nullable(_obj({"ename": _str(), "evalue": _str(),
                                     "traceback": {"type": "array", "items": _str(),
                                                   "description": "without ANSI colours"}},
                                    description="the first error the cell raised")),
            "files": {"type": "array", "items": _ref("OutputFile")},
            "session": kernel_id | {"description": "linked cells only: the kernel they share"},
        }, ("id", "status", "stdout", "stderr", "result", "displays", "error", "files")),
        "OutputFile": _obj({"name": _str(), "size": _int(minimum=0), "url": url},
                           description="a file the cell wrote; its URL is `/files/{request_id}/{name}`"),
        "ExecuteAnswer": _obj({"id": request_id, "output_url": url | {"description": "`/output/{id}`"},
                               "session": kernel_id | {"description": "linked cells only: the kernel they share"}},
                              ("id", "output_url")),
        "JupyterMessage": {
            "type": "object", "required": ["header", "parent_header", "metadata", "content", "msg_type"],
            "description": "a Jupyter message (protocol 5.3); an `extension` message's content is "
                           "`{msg_type: files|limit|session|session_end, content}`",
            "properties": {
                "header": {"type": "object", "required": ["msg_id", "msg_type"], "properties": {
                    "msg_id": _str(), "msg_type": _str(), "session": _str(), "username": _str(),
                    "date": _str(format="date-time"), "version": _str()}},
                "parent_header": {"type": "object"}, "metadata": {"type": "object"},
                "content": {"type": "object"}, "msg_type": _str(),
                "channel": _str("kernels only: the channel it goes on",
                                enum=["shell", "iopub", "stdin", "control"]),
                "buffers": {"type": "array", "items": _str(contentEncoding="base64")},
            }},
        "SessionState": {
            "description": "the session a finished cell became (its kernel kept for live widgets)",
            "oneOf": [
                _obj({"state": _str(const="live"), "started": when}),
                _obj({"state": _str(const="ended"),
                      "reason": {"type": ["string", "null"], "enum": [*SESSION_ENDS, None],
                                 "description": "why it ended; the `session_end` message says it in words"},
                      "started": when, "ended": {"type": ["number", "null"]}}),
            ]},
        "OutputPage": _obj({
            "status": status,
            "done": {"type": "boolean", "description": "the cell ended and every message of it is in this answer"},
            "session": _nullable(_ref("SessionState")),
            "messages": {"type": "array", "maxItems": PAGE_SIZE,
                         "items": _obj({"seq": _int(minimum=1), "msg": _ref("JupyterMessage")})},
            "next": _int("the last seq in this answer (or `after`): the next poll's `after`", minimum=0),
        }, description="a request's messages after a seq"),
        "OutputAnswer": {"allOf": [_obj({"id": request_id}), _ref("OutputPage")]},
        "WatchAnswer": _obj({
            "requests": {"type": "object", "propertyNames": {"pattern": _anchored(REQUEST_ID)},
                         "additionalProperties": _ref("OutputPage"),
                         "description": "each request with news (messages past its seq, or over), by id"},
            "missing": {"type": "array", "items": request_id, "description": "ids no request has"},
        }),
        "InputMessage": {
            "type": "object", "required": ["content"],
            "description": f"one Jupyter message of type {', '.join(INPUT_TYPES)}; its header is completed "
                           "(a `msg_id` is made when none is given)",
            "properties": {
                "msg_type": _str("or `header.msg_type`", enum=list(INPUT_TYPES)),
                "header": {"type": "object", "properties": {
                    "msg_id": _str(maxLength=128), "msg_type": _str(enum=list(INPUT_TYPES)),
                    "session": _str(), "username": _str()}},
                "content": {"type": "object", "required": ["comm_id"], "properties": {
                    "comm_id": _str(minLength=1), "data": {"type": "object"},
                    "target_name": _str("required by `comm_open`")}},
                "metadata": {"type": "object"},
                "buffers": {"type": "array", "items": _str(contentEncoding="base64")},
            }},
        "InputAnswer": _obj({"id": request_id, "seq": _int("the input's place among the session's inputs"),
                             "msg_id": _str("the stored message's `msg_id`: the kernel's answers name it as parent")}),
        "StopAnswer": _obj({"id": request_id, "status": status | {
            "description": "the request's status now (`aborted` for one that was queued)"}}),
        "PermalinkRequest": _obj({"code": _str("the Python to share: not blank, at most `--max-code-size` bytes",
                                               minLength=1)}, closed=True),
        "Permalink": _obj({"id": _str(pattern=_anchored(PERMALINK_ID)),
                           "url": url | {"description": "the page `/c/{id}`"}, "code": _str(), "created": when}),
        "Health": _obj({"status": _str(const="ok"), "queued": _int("requests waiting for a kernel", minimum=0)}),
        # -- Jupyter
        "ApiVersion": _obj({"version": _str(), "singlecell": _str()}),
        "KernelSpec": _obj({"name": kernel_name, "resources": {"type": "object"}, "spec": _obj({
            "argv": {"type": "array", "items": _str()}, "display_name": _str(), "language": _str(const="python"),
            "interrupt_mode": _str(const="signal"), "env": {"type": "object"}, "metadata": {"type": "object"}})}),
        "KernelSpecs": _obj({"default": kernel_name,
                             "kernelspecs": _obj({KERNEL_NAME: _ref("KernelSpec")})}),
        "Kernel": _obj({"id": kernel_id, "name": kernel_name,
                        "last_activity": _str(format="date-time"),
                        "execution_state": _str(enum=["busy", "idle"]),
                        "connections": _int("WebSockets open on it in this web process", minimum=0)}),
        "StartKernel": _obj({"name": _str(f"the kernel spec; only `{KERNEL_NAME}`", default=KERNEL_NAME)}, ()),
        "JupyterSession": _obj({"id": kernel_id | {"description": "the kernel's id"}, "path": _str(), "name": _str(),
                                "type": _str(), "kernel": _ref("Kernel")}),
        "StartSession": _obj({"path": _str(), "name": _str(), "type": _str(default="notebook"),
                              "kernel": _obj({"name": _str(default=KERNEL_NAME)}, ())}, (),
                             description="Jupyter Server's session model; path, name and type are kept, as text, "
                                         "at most 1024 characters each"),
        # -- SageMathCell
        "ServiceRequest": _obj({"code": _str(f"the Python to run, at most {MAX_SERVICE_CODE} characters"),
                                "accepted_tos": _str("ignored: this server has no terms to accept")}, ("code",)),
        "ServiceAnswer": _obj({
            "success": {"type": "boolean", "description": "the cell ended `done` (not an error, timeout or limit)"},
            "stdout": _str("present when the cell wrote to it"), "stderr": _str("present when the cell wrote to it"),
            "execute_reply": {"type": "object", "description": "the kernel's `execute_reply` content, if it sent one"},
        }, ("success",)),
        "SageKernel": _obj({"id": kernel_id, "ws_url": _str(
            "the WebSocket base URL, like ws://host/: the channels are at `{ws_url}kernel/{id}/channels`")}),
        # -- accounts
        "User": _obj({"id": _str(), "name": _str(), "created": when}),
        "ApiToken": _obj({"id": _str(pattern=_anchored(TOKEN_ID)), "label": _str(), "created": when,
                          "revoked": {"type": ["number", "null"]}}),
        "ApiTokens": _obj({"tokens": {"type": "array", "items": _ref("ApiToken")}}),
        "NewTokenRequest": _obj({"label": _str("at most 100 characters are kept; default `a script`")}, ()),
        "NewToken": _obj({"id": _str(pattern=_anchored(TOKEN_ID)), "label": _str(),
                          "token": _str("the token itself (`sc_…`); shown once, stored only as a hash")}),
        # -- the library
        "Draft": _obj({
            "title": _str(f"one line, at most {MAX_TITLE} characters", minLength=1),
            "blurb": _str("Markdown"),
            "tags": {"anyOf": [{"type": "array", "items": _str(), "maxItems": MAX_TAGS},
                               _str("separated by commas or spaces")],
                     "description": "lower-case paths like `plotting/3d`"},
            "files": {"type": "object", "minProperties": 1, "additionalProperties": _str(),
                      "description": "relative path to text; at most `--max-uploads` files and `--max-upload-size` "
                                     "bytes"},
            "command": _str("a suggested cell, at most `--max-code-size` characters"),
        }, ("title", "files"), closed=True, description="a snippet's content: a new revision"),
        "SnippetRef": _obj({"id": snippet_id, "revision": revision_id, "url": url}),
        "Snippet": _obj({
            "id": snippet_id, "revision": revision_id, "url": url, "title": _str(), "blurb": _str(),
            "tags": {"type": "array", "items": _str()}, "command": _str(),
            "files": {"type": "object", "additionalProperties": _str()},
            "owner": _str(), "contributors": {"type": "array", "items": _str()},
            "forked_from": {"type": ["string", "null"]}, "forked_revision": {"type": ["string", "null"]},
            "rating": _num("mean stars, 0 when none"), "ratings": _int(minimum=0), "example": {"type": "boolean"},
            "thumbnail": {"type": ["string", "null"], "description": "`/thumbnails/{sha256}`"},
            "created": when, "updated": when,
        }),
        "SnippetSummary": _obj({
            "id": snippet_id, "title": _str(), "owner": _str(), "tags": {"type": "array", "items": _str()},
            "updated": when, "rating": _num(), "ratings": _int(minimum=0), "example": {"type": "boolean"},
            "thumbnail": {"type": ["string", "null"]}, "url": url}),
        "SnippetPage": _obj({"items": {"type": "array", "items": _ref("SnippetSummary"),
                                       "maxItems": LIBRARY_PAGE_SIZE},
                             "total": _int(minimum=0), "page": _int(minimum=1), "pages": _int(minimum=1)}),
        "History": _obj({"revisions": {"type": "array", "description": "newest first", "items": _obj({
            "n": _int("1 for the first revision", minimum=1), "revision": revision_id, "title": _str(),
            "author": _str(), "created": when})}}),
        "ForkRequest": _obj({"revision": _str("a revision of the snippet's history; default its head")}, ()),
        "NewComment": _obj({
            "body": _str(f"Markdown, at most {MAX_COMMENT} characters", minLength=1),
            "revision": _str("a line comment: a revision of the snippet's history"),
            "path": _str("a line comment: a file of that revision"),
            "line": _int("a line comment: a line of that file", minimum=1)}, ("body",), closed=True),
        "Comment": _obj({"id": _str(pattern=_anchored(TOKEN_ID)), "author": _str(), "body": _str(), "created": when,
                         "revision": {"type": ["string", "null"]}, "path": {"type": ["string", "null"]},
                         "line": {"type": ["integer", "null"]}}),
        "Comments": _obj({"comments": {"type": "array", "items": _ref("Comment")}}),
        "RatingRequest": _obj({"stars": _int(minimum=1, maximum=5)}),
        "Rating": _obj({"rating": _num("mean stars"), "ratings": _int(minimum=0)}),
        "Related": _obj({"related": {"type": "array", "items": _ref("SnippetSummary")}}),
        "ThumbnailRequest": _obj({
            "request": request_id | {"description": "the run that made the image"},
            "name": _str("a PNG, JPEG or GIF file the run wrote"),
            "output": {"anyOf": [_int(minimum=1), _str(pattern="^[0-9]{1,9}$")],
                       "description": "or the seq of an image the run displayed"}}, ("request",)),
        "ThumbnailAnswer": _obj({"thumbnail": {"type": ["string", "null"], "description": "`/thumbnails/{sha256}`"}}),
        "Tags": _obj({"tags": {"type": "array", "maxItems": 20,
                               "items": _obj({"tag": _str(), "snippets": _int(minimum=1)})}}),
    }


def _security_schemes() -> Json:
    return {
        "bearerToken": {"type": "http", "scheme": "bearer",
                        "description": "`Authorization: Bearer <API token>`: a token (`sc_…`) from the account page, "
                                       "`POST /api/tokens` or `singlecell token create --user NAME`. A token that is "
                                       "not valid is a 401. It needs no XSRF token."},
        "jupyterToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                         "description": "`Authorization: token <API token>`, as Jupyter clients send it (the kernel "
                                        "API and linked cells; `Bearer` works there too). The kernels a token starts "
                                        "are its own: another token gets 404. Without `--require-token` no token is "
                                        "needed."},
        "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                       "description": "the API token as `?token=`, for WebSockets, whose headers browsers cannot set "
                                      "(the access log hides it)"},
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                          "description": "the login session, set by `POST /login` or `/signup` (HttpOnly, "
                                         "SameSite=Lax, Secure on https)"},
        "xsrfCookie": {"type": "apiKey", "in": "cookie", "name": "_xsrf",
                       "description": "Tornado's XSRF double-submit cookie (pages set it): a cookie-authenticated "
                                      "write sends its value back in the form field `_xsrf` or the `X-XSRFToken` "
                                      "header, else 403 `forbidden`"},
        "xsrfHeader": {"type": "apiKey", "in": "header", "name": "X-XSRFToken",
                       "description": "the `_xsrf` cookie's value, for cookie-authenticated API calls"},
    }


_TAGS = [
    {"name": "compute", "description": "Run cells: `/eval` waits, `/execute` queues; follow them with `/output` and "
                                       "`/watch`; widgets' inputs, stopping, files and shared code"},
    {"name": "jupyter", "description": "The Jupyter kernel API, as Jupyter Kernel Gateway serves it (JupyterLab's "
                                       "`--gateway-url`, Thebe, `@jupyterlab/services`)"},
    {"name": "sagecell", "description": "SageMathCell's interfaces, for its clients and embedding pages"},
    {"name": "accounts", "description": "Who the caller is, and their API tokens"},
    {"name": "library", "description": "The snippet library's JSON API, raw files, zips and thumbnails"},
    {"name": "pages", "description": "HTML pages, the forms they post (errors are pages too), and the static files "
                                     "they load"},
    {"name": "operations", "description": "Liveness, and this document"},
]


# -- the compute API (singlecell/web/handlers.py: routes()) --------------------------------------

def _request_id_param() -> Json:
    return _path_param("request_id", REQUEST_ID, "the request's id, from `/eval` or `/execute`", _EXAMPLE_ID)


def _submission_body(verb: str) -> Json:
    return _body({
        "application/json": {
            "schema": _ref("Submission"),
            "examples": {
                "code": {"value": {"code": "print(6*7)"}},
                "upload": {"summary": "a file to read, and a time limit",
                           "value": {"code": "print(open('data.txt').read())", "files": {"data.txt": "aGVsbG8="},
                                     "timeout": 5}},
                "linked": {"summary": "the first of linked cells", "value": {"code": "x = 1", "linked": True}},
                "in_session": {"summary": "a linked cell", "value": {"code": "x + 1", "session": _EXAMPLE_KERNEL}},
                "snippet": {"summary": "with a snippet's files", "value": {
                    "code": "from shapes import PI\nprint(2 * PI)", "snippet": _EXAMPLE_SNIPPET}},
            }},
        "text/plain": {"schema": _str("the code itself, UTF-8"), "example": "print(6*7)"},
    }, f"The cell to {verb}: JSON (also when there is no `Content-Type`), or the code itself as `text/plain`. Any "
       "other type is a 400 (not a 415). The body may hold at most 6 x `--max-code-size` + 2 x "
       "`--max-upload-size` + 64 KiB bytes (the code JSON-escaped, the uploads in base64).")


_SUBMIT_WHY = {
    BadRequest.code: "not UTF-8, not JSON, not an object, an unknown field, no code, NUL in the code, a bad "
                     "`timeout`, `files`, `snippet` or `session`, an unsupported `Content-Type`, more files than "
                     "`--max-uploads`, or a snippet file named as an upload",
    PayloadTooLarge.code: "the body, the code (`--max-code-size`) or the files (`--max-upload-size`) pass their "
                          "limit",
    Unauthorized.code: "`linked` or `session` with an API token that is not valid, or none with `--require-token`",
    NotFound.code: "the snippet, or its revision, does not exist (or the server has no library)",
    SessionEnded.code: "`session` names a kernel that is not live, or not the token's",
}


def _callback_url(lead: str) -> Json:
    return _str(f"{lead}when the cell ends, its `/eval` summary (an `EvalAnswer`) is POSTed here, signed: "
                "`X-Singlecell-Signature: sha256=<hex HMAC-SHA256 of \"<X-Singlecell-Timestamp>.<body>\">`, keyed "
                "with the hex SHA-256 of the API token that submitted it (unsigned without a token); any answer "
                "but a 2xx is tried again with back-off, `--callback-attempts` times. Only public addresses: one "
                "whose host resolves to loopback, private, link-local or metadata addresses is a 400 "
                "`callback_refused`, unless `--callback-allow` lists it", format="uri", maxLength=2000)


def _cell_callbacks() -> Json:
    """The OpenAPI ``callbacks`` of an operation that takes a ``callback_url``."""
    return {"cellEnded": {"{$request.body#/callback_url}": {"post": {
        "summary": "A cell ended: its summary",
        "parameters": [
            {"name": "X-Singlecell-Request", "in": "header", "required": True, "schema": _str("the request's id")},
            {"name": "X-Singlecell-Timestamp", "in": "header", "required": True,
             "schema": _str("seconds since the epoch, signed with the body")},
            {"name": "X-Singlecell-Signature", "in": "header", "required": False,
             "schema": _str("`sha256=<hex>`; with an API token only")},
            {"name": "X-Singlecell-Attempt", "in": "header", "required": True, "schema": _str("1, 2, …")}],
        "requestBody": {"required": True, "content": _json(_ref("EvalAnswer"))},
        "responses": {"2XX": {"description": "received; any other answer is tried again later"}},
    }}}}


def _compute_paths() -> Json:
    eval_example: Json = {"id": _EXAMPLE_ID, "status": "ok", "stdout": "42\n", "stderr": "", "result": None,
                    "displays": [], "error": None, "files": []}
    error_example: Json = {"id": _EXAMPLE_ID, "status": "error", "stdout": "", "stderr": "", "result": None,
                     "displays": [], "error": {"ename": "ZeroDivisionError", "evalue": "division by zero",
                                               "traceback": ["Traceback (most recent call last):", "...",
                                                             "ZeroDivisionError: division by zero"]},
                     "files": []}
    output_example = {
        "id": _EXAMPLE_ID, "status": "done", "done": True, "session": None, "next": 5,
        "messages": [
            {"seq": 1, "msg": _example_message("status", {"execution_state": "busy"})},
            {"seq": 2, "msg": _example_message("execute_input", {"code": "print(6*7)", "execution_count": 1})},
            {"seq": 3, "msg": _example_message("stream", {"name": "stdout", "text": "42\n"})},
            {"seq": 4, "msg": _example_message("execute_reply", {"status": "ok", "execution_count": 1,
                                                                 "user_expressions": {}, "payload": []})},
            {"seq": 5, "msg": _example_message("status", {"execution_state": "idle"})},
        ]}
    wait = _query("wait", {"type": "number", "minimum": 0, "default": 0},
                  f"seconds to wait for the first new message (at most {MAX_WAIT:g}; more is taken as "
                  f"{MAX_WAIT:g})", example=10)
    return {
        "/eval": _path(
            r"/eval",
            post=_op(
                "eval", "Run a cell and wait for it", "compute",
                description="Stores the cell, waits until it ends (its time limit, plus 60 s to wait in the queue "
                            "and be collected), and answers with what it did, folded into one object. Plain text "
                            "instead when the `Accept` header names `text/plain` before `application/json`, or "
                            "the body was plain text and `Accept` does not name JSON. An `/eval` never keeps its "
                            "kernel for widgets; with `\"linked\": true` its kernel stays (`session` in the "
                            "answer), with `\"session\"` it runs in that kernel.",
                security=_OWNER,
                body=_submission_body("run"),
                responses={
                    "200": _response(
                        "The cell ended (any way: `status` says how).",
                        {"application/json": {"schema": _ref("EvalAnswer"),
                                              "examples": {"ok": {"value": eval_example},
                                                           "error": {"value": error_example}}},
                         "text/plain": {"schema": _str("what a terminal would show: stdout, stderr, displays' and "
                                                       "the result's text, the traceback, `[file] name (n bytes): "
                                                       "url` lines"),
                                        "example": "42\n"}},
                        {"X-Singlecell-Status": _header("plain-text answers only: the `status`",
                                                        _str(enum=sorted(set(EVAL_STATUS.values()))))}),
                    **_error_responses(
                        BadRequest.code, Unauthorized.code, *_BODY, NotFound.code, SessionEnded.code,
                        TooManySessions.code, QuotaExceeded.code, QueueFull.code, _STORE, StillRunning.code,
                        why={**_SUBMIT_WHY, TooManySessions.code: "`linked` only: " + _WHY[TooManySessions.code],
                             BadRequest.code: _SUBMIT_WHY[BadRequest.code] + ", or a `callback_url`"}),
                })),
        "/execute": _path(
            r"/execute",
            post=_op(
                "execute", "Queue a cell", "compute",
                description="Stores the cell and answers at once; follow it with `GET /output/{id}` or `/watch`, or "
                            "give a `callback_url` to be told when it ends. A queued cell keeps its kernel while "
                            "its widgets are open (a live session), so it counts against "
                            "`--max-sessions-per-client`.",
                security=_OWNER,
                body=_submission_body("queue"),
                responses={
                    "202": _ok("Queued (or, with `session`, stored as the kernel's next input).",
                               _ref("ExecuteAnswer"),
                               {"id": _EXAMPLE_ID, "output_url": f"http://127.0.0.1:8888/output/{_EXAMPLE_ID}"}),
                    **_error_responses(BadRequest.code, CallbackRefused.code, Unauthorized.code, *_BODY,
                                       NotFound.code, SessionEnded.code, TooManySessions.code, QuotaExceeded.code,
                                       QueueFull.code, _STORE, why=_SUBMIT_WHY),
                },
            ) | {"callbacks": _cell_callbacks()}),
        "/batch": _path(
            r"/batch",
            post=_op(
                "submitBatch", "Queue up to 100 cells at once", "compute",
                description="Stores every cell, or none, each a request of its own (follow each with "
                            "`GET /output/{id}`, or all with `GET /batch/{id}` or `/watch`). Under the caller's "
                            "limits the batch counts once against the rate and each cell against `max_running`. "
                            "With `callback_url`, each cell's summary is POSTed there as it ends. The body may "
                            "hold at most 4 x what `/execute` takes.",
                security=_OWNER,
                body=_body(_json(_ref("BatchSubmission"), {"cells": [{"code": "print(6*7)"}, {"code": "2 + 2"}],
                                                           "callback_url": "https://example.org/hooks/cells"}),
                           "the cells"),
                responses={
                    "202": _ok("Queued, all of them.", _ref("BatchAnswer"), {
                        "id": _EXAMPLE_ID, "ids": [_EXAMPLE_ID], "batch_url": f"http://127.0.0.1:8888/batch/"
                                                                              f"{_EXAMPLE_ID}"}),
                    **_error_responses(
                        BadRequest.code, CallbackRefused.code, Unauthorized.code, *_BODY, TooManySessions.code,
                        QuotaExceeded.code, QueueFull.code, _STORE,
                        why={BadRequest.code: f"not JSON, not an object with `cells`, 0 or more than {MAX_CELLS} "
                                              "cells, an unknown field, or a cell `/execute` would refuse (the "
                                              "message names it by its index)",
                             Unauthorized.code: "an API token that is not valid, or none with `--require-token`",
                             QueueFull.code: "the cells would pass `--max-queue`"}),
                },
            ) | {"callbacks": _cell_callbacks()}),
        "/batch/{batch_id}": _path(
            rf"/batch/({REQUEST_ID})",
            [{"name": "batch_id", "in": "path", "required": True, "description": "the batch's id, from POST /batch",
              "schema": _str(pattern=_anchored(REQUEST_ID)), "example": _EXAMPLE_ID}],
            get=_op(
                "getBatch", "How a batch's cells are doing", "compute",
                description="Each cell's status and output URL, in the order submitted, and its callback's state.",
                responses={
                    "200": _ok("The batch.", _ref("BatchState"), {
                        "id": _EXAMPLE_ID, "total": 1, "ended": 1, "cells": [{
                            "id": _EXAMPLE_ID, "status": "done", "output_url": f"http://127.0.0.1:8888/output/"
                                                                              f"{_EXAMPLE_ID}",
                            "callback": {"state": "delivered", "attempts": 1, "last_error": None}}]}),
                    **_error_responses(NotFound.code, _STORE, why={NotFound.code: "no batch has this id"}),
                })),
        "/output/{request_id}": _path(
            rf"/output/({REQUEST_ID})", [_request_id_param()], also=(r"/output/([^/]+)",),
            get=_op(
                "getOutput", "A request's messages after a seq (long-poll)", "compute",
                description=f"The messages with a seq above `after` (at most {PAGE_SIZE}), waiting up to `wait` "
                            "seconds for the first while the cell runs or its session is live. `done` is true once "
                            "the cell ended and this answer holds its last message; a live session may still add "
                            "messages (its widgets' answers). Reading a live session keeps it from ending unread. "
                            "Also routed: `/output/([^/]+)`, any id that is not 32 hex digits, a 404.",
                parameters=[
                    _query("after", {"type": "integer", "minimum": 0, "default": 0},
                           "the last seq the client has (`next` of the previous answer)", example=0),
                    wait],
                responses={
                    "200": _ok("The messages after `after`; none when `wait` ran out first.", _ref("OutputAnswer"),
                               output_example),
                    **_error_responses(
                        BadRequest.code, NotFound.code, _STORE,
                        why={BadRequest.code: "`after` is not a whole number, or `after`/`wait` is negative or not "
                                              "a number",
                             NotFound.code: "no request has this id (or it is not 32 hex digits)"}),
                })),
        "/watch": _path(
            r"/watch",
            get=_op(
                "watch", "One long-poll for many requests", "compute",
                description="The long-poll of a page with many cells (browsers open six connections to an "
                            "origin). Waits up to `wait` seconds until any of the requests has messages past its "
                            "seq (or is over), then answers for every one that has; `requests` is empty when none "
                            "had by then. A client that goes away gets no answer.",
                parameters=[
                    _query("ids", _str(pattern=_anchored(rf"{REQUEST_ID}:[0-9]+(,{REQUEST_ID}:[0-9]+)*,?")),
                           f"`<request id>:<last seq the page has>`, comma-separated, at most {MAX_WATCHED}",
                           required=True, example=f"{_EXAMPLE_ID}:0"),
                    wait],
                responses={
                    "200": _ok("The requests with news, and the ids no request has.", _ref("WatchAnswer"),
                               {"requests": {_EXAMPLE_ID: {k: v for k, v in output_example.items() if k != "id"}},
                                "missing": []}),
                    **_error_responses(
                        BadRequest.code, _STORE,
                        why={BadRequest.code: f"`ids` is missing, empty, malformed or names more than "
                                              f"{MAX_WATCHED} requests; `wait` is negative or not a number"}),
                })),
        "/input/{request_id}": _path(
            rf"/input/({REQUEST_ID})", [_request_id_param()],
            post=_op(
                "sendInput", "A widget's message for a cell's live session", "compute",
                description="A Jupyter `comm_msg`, `comm_open` or `comm_close` for the kernel a cell kept for its "
                            "widgets. It is stored as the session's next input and delivered in order; the "
                            "kernel's answers join the cell's messages with this message as their parent. The "
                            f"body, JSON whatever its `Content-Type` says, may hold at most {INPUT_BODY_LIMIT} "
                            "bytes.",
                body=_body(_json(_ref("InputMessage"), {"msg_type": "comm_msg", "content": {
                    "comm_id": "a1b2c3", "data": {"method": "update", "state": {"value": 5}}}}), "the message"),
                responses={
                    "202": _ok("Stored.", _ref("InputAnswer"),
                               {"id": _EXAMPLE_ID, "seq": 1, "msg_id": "9d1e0c7a5b3f4e2d8c6a4b2f0e1d3c5a"}),
                    **_error_responses(
                        BadRequest.code, *_BODY, NotFound.code, SessionEnded.code, _STORE,
                        why={BadRequest.code: "not JSON, or not a comm message as the schema says",
                             NotFound.code: "no request has this id",
                             SessionEnded.code: "the cell has no live session (any more): run it again"}),
                })),
        "/stop/{request_id}": _path(
            rf"/stop/({REQUEST_ID})", [_request_id_param()],
            post=_op(
                "stop", "Stop a request", "compute",
                description="A queued request ends at once, `aborted` with a `CellStopped` error; a running one "
                            "as soon as its device hears; a finished one's live session ends (`stopped`). Any "
                            f"body (at most {STOP_BODY_LIMIT} bytes) is ignored.",
                body=_body({"*/*": {"schema": {}}}, "ignored", required=False),
                responses={
                    "202": _ok("Asked.", _ref("StopAnswer"), {"id": _EXAMPLE_ID, "status": "aborted"}),
                    **_error_responses(*_BODY, NotFound.code, _STORE,
                                       why={NotFound.code: "no request has this id"}),
                })),
        "/files/{request_id}/{name}": _path(
            rf"/files/({REQUEST_ID})/({ANY_PATH})",
            [_request_id_param(),
             _path_param("name", ANY_PATH, "the file's name, as the cell wrote it (a path: slashes are not escaped)",
                         "out.csv")],
            get=_op(
                "getFile", "A file a cell wrote", "compute",
                responses={
                    "200": _response(
                        "The file, with the type it was stored with; sandboxed by its CSP, so it never runs as a "
                        "page of this site. Behind nginx (`--accel-redirect`) the body is empty and "
                        "`X-Accel-Redirect` names it for nginx.",
                        {"*/*": {"schema": _str(format="binary")}},
                        {"Content-Security-Policy": _header("`sandbox; default-src 'none'; img-src data:; style-src "
                                                            "'unsafe-inline'`"),
                         "Content-Disposition": _header("`inline; filename*=UTF-8''<name>`"),
                         "Cache-Control": _header("`private, max-age=3600`"),
                         "X-Accel-Redirect": _header("with `--accel-redirect` only")}),
                    **_error_responses(NotFound.code, _STORE,
                                       why={NotFound.code: "no request has this id, or it wrote no such file"}),
                })),
        "/permalink": _path(
            r"/permalink",
            post=_op(
                "savePermalink", "Save code to share", "compute",
                description="The same code always gets the same short id. The body is JSON whatever its "
                            "`Content-Type` says.",
                body=_body(_json(_ref("PermalinkRequest"), {"code": "print(6*7)"}), "the code"),
                responses={
                    "201": _ok("Saved (or found saved).", _ref("Permalink"),
                               {"id": "k5v2xq7m", "url": "http://127.0.0.1:8888/c/k5v2xq7m", "code": "print(6*7)",
                                "created": 1735732800.0}),
                    **_error_responses(
                        BadRequest.code, *_BODY, _STORE,
                        why={BadRequest.code: "not UTF-8 JSON, not an object with the one field `code`, or no code",
                             PayloadTooLarge.code: "the body, or the code (`--max-code-size`), passes its limit"}),
                })),
        "/permalink/{permalink_id}": _path(
            rf"/permalink/({PERMALINK_ID})",
            [_path_param("permalink_id", PERMALINK_ID, "the shared code's id", "k5v2xq7m")],
            get=_op(
                "getPermalink", "Shared code", "compute",
                responses={
                    "200": _ok("The code.", _ref("Permalink")),
                    **_error_responses(NotFound.code, _STORE, why={NotFound.code: "no shared code has this id"}),
                })),
        "/health": _path(
            r"/health",
            get=_op(
                "health", "Liveness and the queue's length", "operations",
                responses={"200": _ok("The web tier and its store answer.", _ref("Health"),
                                      {"status": "ok", "queued": 0}),
                           **_error_responses(_STORE)})),
        "/metrics": _path(
            r"/metrics",
            get=_op(
                "metrics", "This web process's Prometheus metrics", "operations",
                description="Prometheus's text format: HTTP requests by route, method and status and their "
                            "time; the queue's depth (read from the store when scraped: NaN while it cannot be "
                            "reached); store call times; wake-ups and fallback polls; limits hit; requests "
                            "declared lost. A device serves its own on `--metrics-port`: kernels ready and busy, "
                            "live sessions, queue wait, run time and end-to-end time.",
                responses={"200": _response(f"The metrics (`Content-Type: {METRICS_CONTENT_TYPE}`).", {"text/plain": {
                    "schema": {"type": "string"},
                    "example": "# TYPE singlecell_queue_depth gauge\nsinglecell_queue_depth 0.0\n"}})})),
        "/": _path(r"/", get=_op("indexPage", "One cell, with Share", "pages",
                                 security=_PAGE, responses={"200": _html("The page.")})),
        "/embedding": _path(r"/embedding", get=_op("embeddingPage", "How to embed cells", "pages",
                                                   security=_PAGE, responses={"200": _html("The guide.")})),
        "/status": _path(r"/status", get=_op(
            "statusPage", "What the server did over the last 15 minutes", "operations", security=_PAGE,
            description="Cells ended per minute, their latency (p50, p99), the queue and the running cells, the "
                        "kernels in use, and each device seen lately with its sandbox layers; read from the store.",
            responses={"200": _html("The page (it reloads itself every 30 s)."),
                       **_error_responses(_STORE, html=True)})),
        "/c/{permalink_id}": _path(
            rf"/c/({PERMALINK_ID})",
            [_path_param("permalink_id", PERMALINK_ID, "the shared code's id (any other segment, even an empty "
                                                       "one, is routed by `/c/([^/]*)` to the 404 page)",
                         "k5v2xq7m")],
            also=(r"/c/([^/]*)",),
            get=_op("sharedCellPage", "Shared code, ready to run", "pages", security=_PAGE,
                    responses={"200": _html("The page."),
                               **_error_responses(NotFound.code, _STORE, html=True,
                                                  why={NotFound.code: "no shared code has this id"})})),
    }


# -- the Jupyter kernel API (singlecell/web/kernels.py: kernel_routes()) -------------------------

def _kernel_id_param(name: str = "kernel_id", what: str = "the kernel's id") -> Json:
    return _path_param(name, KERNEL_ID, f"{what}: a UUID (32 hex digits without dashes work too); anything "
                                        "else, and another token's kernel, is a 404", _EXAMPLE_KERNEL)


def _websocket(operation_id: str, tag: str, summary: str, description: str) -> Json:
    """A WebSocket's GET: OpenAPI describes the upgrade, not the frames."""
    return _op(
        operation_id, summary, tag, security=_JUPYTER,
        description="**A WebSocket** (OpenAPI cannot describe its frames): this documents the HTTP upgrade and "
                    "the answers given instead of it. " + description,
        parameters=[
            _query("session_id", _str(maxLength=128), "the reader's name (every Jupyter client sends one): where it "
                                                      "has read to is recorded, so coming back resumes there"),
            _query("after", _str(pattern="^[0-9]+$"), "start after this seq (instead of the reader's cursor, or "
                                                      "the kernel's last message for a new reader)"),
            {"name": "Upgrade", "in": "header", "required": True, "schema": _str(const="websocket")},
            {"name": "Connection", "in": "header", "required": True, "schema": _str(), "example": "Upgrade"},
            {"name": "Sec-WebSocket-Version", "in": "header", "required": True, "schema": _str(const="13")},
            {"name": "Sec-WebSocket-Key", "in": "header", "required": True, "schema": _str()},
            {"name": "Sec-WebSocket-Protocol", "in": "header", "required": False, "schema": _str(),
             "description": f"offer `{V1_PROTOCOL}` for Jupyter's v1 binary framing"},
        ],
        responses={
            "101": _response("Switching Protocols: the WebSocket is open.", headers={
                "Sec-WebSocket-Accept": _header("the handshake's answer"),
                "Sec-WebSocket-Protocol": _header(f"`{V1_PROTOCOL}` when the client offered it")}),
            "400": _response("Not a WebSocket handshake (Tornado's text: no `Upgrade: websocket`, no "
                             "`Connection: Upgrade`, or missing WebSocket headers).",
                             {"text/html": {"schema": _str()}}),
            **_error_responses(Unauthorized.code, NotFound.code, retry_after=False,
                               why={NotFound.code: "no live kernel of the caller's token has this id"}),
            "403": _response("Cross origin websockets not allowed: the page's origin is not one of `--cors-origins` "
                             "(Tornado's text).", {"text/html": {"schema": _str()}}),
            "426": _response("Upgrade Required: `Sec-WebSocket-Version` is not 13.",
                             headers={"Sec-WebSocket-Version": _header("`13`")}),
            "503": _response("Service Unavailable. `store_unavailable`: the store cannot be reached (no "
                             "`Retry-After` here)", _json(_ref("Error"))) | {"x-error-codes": [StoreUnavailable.code]},
        })


def _jupyter_paths() -> Json:
    kernel_example = {"id": _EXAMPLE_KERNEL, "name": KERNEL_NAME, "last_activity": "2025-01-01T12:00:00.123456Z",
                      "execution_state": "idle", "connections": 0}
    lookup = (Unauthorized.code, NotFound.code, _STORE)
    lookup_why = {NotFound.code: "no live kernel of the caller's token has this id"}
    start_why = {
        BadRequest.code: "the body is not empty and not a JSON object",
        NotFound.code: f"a kernel spec other than `{KERNEL_NAME}`",
        KernelUnavailable.code: "the server keeps no sessions (`--max-sessions 0`), or the kernel did not start",
        StillRunning.code: "the kernel was not ready within `--time-limit` plus 60 s",
    }
    return {
        "/api": _path(r"/api/?", get=_op("jupyterApi", "The server's version, as Jupyter Server answers", "jupyter",
                                         security=_PUBLIC,
                                         responses={"200": _ok("The version.", _ref("ApiVersion"))})),
        "/api/kernelspecs": _path(
            r"/api/kernelspecs/?",
            get=_op("listKernelSpecs", "The kernel specs: one, python3", "jupyter", security=_PUBLIC,
                    responses={"200": _ok("The specs.", _ref("KernelSpecs"))})),
        "/api/kernelspecs/{kernel_name}": _path(
            r"/api/kernelspecs/([^/]+)/?",
            [_path_param("kernel_name", "[^/]+", f"the spec's name; only `{KERNEL_NAME}` exists", KERNEL_NAME)],
            get=_op("getKernelSpec", "One kernel spec", "jupyter", security=_PUBLIC,
                    responses={"200": _ok("The spec.", _ref("KernelSpec")),
                               **_error_responses(NotFound.code, why={NotFound.code: "no spec has this name"})})),
        "/api/kernels": _path(
            r"/api/kernels/?",
            get=_op("listKernels", "The caller's kernels", "jupyter", security=_JUPYTER,
                    description="The live kernels of the caller's token; without a token, those started without one "
                                "from the caller's address.",
                    responses={"200": _ok("The kernels.", {"type": "array", "items": _ref("Kernel")},
                                          [kernel_example]),
                               **_error_responses(Unauthorized.code, _STORE)}),
            post=_op("startKernel", "Start a kernel", "jupyter", security=_JUPYTER,
                     description="A sandboxed kernel with a cell's limits, kept as a live session; answered once it "
                                 "is ready. It belongs to the caller's token.",
                     body=_body(_json(_ref("StartKernel"), {"name": KERNEL_NAME}),
                                "optional; JSON whatever the `Content-Type`", required=False),
                     responses={
                         "201": _ok("Started.", _ref("Kernel"), kernel_example,
                                    {"Location": _header("`/api/kernels/{id}`")}),
                         **_error_responses(BadRequest.code, *_BODY, NotFound.code, *_KERNEL_START, _STORE,
                                            why=start_why),
                     })),
        "/api/kernels/{kernel_id}": _path(
            r"/api/kernels/([^/]+)/?", [_kernel_id_param()],
            get=_op("getKernel", "One kernel", "jupyter", security=_JUPYTER,
                    responses={"200": _ok("The kernel.", _ref("Kernel"), kernel_example),
                               **_error_responses(*lookup, why=lookup_why)}),
            delete=_op("shutdownKernel", "Shut a kernel down", "jupyter", security=_JUPYTER,
                       description="Its session ends (`stopped`); answered once its device ended it, or after 10 s.",
                       responses={"204": _no_content("Shut down."), **_error_responses(*lookup, why=lookup_why)})),
        "/api/kernels/{kernel_id}/interrupt": _path(
            r"/api/kernels/([^/]+)/(interrupt|restart)/?", [_kernel_id_param()],
            post=_op("interruptKernel", "Interrupt the running cell (SIGINT)", "jupyter", security=_JUPYTER,
                     description="Stores an `interrupt_request` on control; answered once stored. Any body is "
                                 "ignored.",
                     responses={"204": _no_content("Stored."),
                                **_error_responses(*_BODY, *lookup, why={
                                    NotFound.code: "no live kernel of the caller's token has this id, or it ended"})})),
        "/api/kernels/{kernel_id}/restart": _path(
            r"/api/kernels/([^/]+)/(interrupt|restart)/?", [_kernel_id_param()],
            post=_op("restartKernel", "A fresh kernel under the same id", "jupyter", security=_JUPYTER,
                     description="The old kernel's files are carried over; answered once the new kernel said "
                                 f"`starting` (at most {RESTART_WAIT:g} s). Any body is ignored.",
                     responses={
                         "200": _ok("Restarted.", _ref("Kernel"), kernel_example),
                         **_error_responses(*_BODY, *lookup, KernelUnavailable.code, why={
                             NotFound.code: "no live kernel of the caller's token has this id, or the restart ended it",
                             KernelUnavailable.code: f"the new kernel was not ready within {RESTART_WAIT:g} s"}),
                     })),
        "/api/kernels/{kernel_id}/channels": _path(
            r"/api/kernels/([^/]+)/channels", [_kernel_id_param()],
            get=_websocket("kernelChannels", "jupyter", "The kernel's channels (WebSocket)",
                           "Frames are Jupyter messages with a `channel` (shell, iopub, stdin, control): JSON text, "
                           f"Jupyter Server's binary frame for messages with buffers, or `{V1_PROTOCOL}` framing. "
                           "What a client sends is validated and stored as the kernel's next input (types a kernel "
                           "ignores are dropped); the kernel's messages come in order, and `status: dead` before "
                           "the socket closes when the session ends. A ping every 30 s.")),
        "/api/sessions": _path(
            r"/api/sessions/?",
            get=_op("listSessions", "The caller's Jupyter sessions (one per kernel)", "jupyter", security=_JUPYTER,
                    responses={"200": _ok("The sessions.", {"type": "array", "items": _ref("JupyterSession")}),
                               **_error_responses(Unauthorized.code, _STORE)}),
            post=_op("startSession", "Start a kernel as a Jupyter session", "jupyter", security=_JUPYTER,
                     body=_body(_json(_ref("StartSession"), {"path": "notebook.ipynb", "name": "notebook.ipynb",
                                                            "type": "notebook", "kernel": {"name": KERNEL_NAME}}),
                                "JSON whatever the `Content-Type`; an empty body starts a session too",
                                required=False),
                     responses={
                         "201": _ok("Started.", _ref("JupyterSession")),
                         **_error_responses(BadRequest.code, *_BODY, NotFound.code, *_KERNEL_START, _STORE,
                                            why={**start_why, BadRequest.code: "not a JSON object"}),
                     })),
        "/api/sessions/{session_id}": _path(
            r"/api/sessions/([^/]+)/?", [_kernel_id_param("session_id", "the session's id, its kernel's")],
            get=_op("getSession", "One Jupyter session", "jupyter", security=_JUPYTER,
                    responses={"200": _ok("The session.", _ref("JupyterSession")),
                               **_error_responses(*lookup, why=lookup_why)}),
            delete=_op("deleteSession", "End a session and its kernel", "jupyter", security=_JUPYTER,
                       responses={"204": _no_content("Ended."), **_error_responses(*lookup, why=lookup_why)})),
    }


# -- SageMathCell (singlecell/web/sagecell.py: sagecell_routes()) --------------------------------

def _sagecell_paths() -> Json:
    kernel_fields = _obj({"method": _str("`DELETE` ends the kernel instead", enum=["DELETE"])}, ())
    kernel_body = _body({**_form(kernel_fields), **_json(kernel_fields)},
                        "optional fields: JSON when the `Content-Type` names json, else a form", required=False)
    method_query = _query("method", _str(enum=["DELETE"]), "`DELETE` ends the kernel instead")
    stop = {"200": _ok("Ended, or there was no such kernel of the caller's (SageMathCell answers that quietly "
                       "too).", {"type": "object", "maxProperties": 0}, {}),
            **_error_responses(Unauthorized.code, _STORE)}
    started = {
        "200": _ok("Started (or, with `method=DELETE`, ended: `{}`).",
                   {"anyOf": [_ref("SageKernel"), {"type": "object", "maxProperties": 0}]},
                   {"id": _EXAMPLE_KERNEL, "ws_url": "ws://127.0.0.1:8888/"},
                   {"Jupyter-Kernel-ID": _header("the kernel's id (when one was started)")}),
        **_error_responses(BadRequest.code, *_BODY, *_KERNEL_START, _STORE, why={
            BadRequest.code: "a JSON body that is not JSON, or a form that is not UTF-8",
            KernelUnavailable.code: "the server keeps no sessions (`--max-sessions 0`), or the kernel did not start",
            StillRunning.code: "the kernel was not ready within `--time-limit` plus 60 s"}),
    }
    service_fields = _ref("ServiceRequest")
    return {
        "/service": _path(
            r"/service",
            post=_op(
                "sagecellService", "Run code and wait (SageMathCell's /service)", "sagecell", security=_OWNER,
                description=f"A one-shot cell with a time limit of at most {SERVICE_TIMEOUT:g} s. Sage itself is "
                            "not here: code that needs it fails as Python. The body may hold at most "
                            f"{4 * MAX_SERVICE_CODE + 4096} bytes.",
                body=_body({**_form(service_fields, multipart=True), **_json(service_fields)},
                           "the form field `code` (JSON when the `Content-Type` names json)"),
                responses={
                    "200": _ok("The cell ended.", _ref("ServiceAnswer"),
                               {"stdout": "42\n", "execute_reply": {"status": "ok", "execution_count": 1,
                                                                    "user_expressions": {}, "payload": []},
                                "success": True}),
                    **_error_responses(
                        BadRequest.code, Unauthorized.code, *_BODY, QuotaExceeded.code, QueueFull.code, _STORE,
                        StillRunning.code,
                        why={Unauthorized.code: "an API token that is not valid, or none with `--require-token`",
                             BadRequest.code: "no field `code`, a JSON body that is not JSON or not an object, or a "
                                              "form that is not UTF-8",
                             PayloadTooLarge.code: f"the body, or the code (over {MAX_SERVICE_CODE} characters: "
                                                   f"`Max code size is {MAX_SERVICE_CODE} characters`)"}),
                })),
        "/kernel": _path(
            r"/kernel/?()",
            post=_op("sagecellStartKernel", "Start a kernel (SageMathCell's /kernel)", "sagecell",
                     security=_JUPYTER, parameters=[method_query], body=kernel_body, responses=started,
                     description="A kernel of the Jupyter API; its WebSocket is `/kernel/{id}/channels`."),
            delete=_op("sagecellStopNoKernel", "End no kernel", "sagecell", security=_JUPYTER,
                       description="Names no kernel, so ends none; answered as SageMathCell does.",
                       responses=stop)),
        "/kernel/{kernel_id}": _path(
            r"/kernel/([^/]+)/?", [_kernel_id_param()],
            post=_op("sagecellKernelPost", "End a kernel with method=DELETE", "sagecell",
                     security=_JUPYTER, parameters=[method_query], body=kernel_body,
                     responses={**stop, **_error_responses(BadRequest.code, Unauthorized.code, _STORE, why={
                         BadRequest.code: "no `method=DELETE`: this path only ends a kernel (start one with "
                                          "`POST /kernel`)"})},
                     description="With `method=DELETE` (a field or the query) the kernel ends; without it, 400."),
            delete=_op("sagecellStopKernel", "End a kernel", "sagecell", security=_JUPYTER, responses=stop)),
        "/kernel/{kernel_id}/channels": _path(
            r"/kernel/([^/]+)/channels", [_kernel_id_param()],
            get=_websocket("sagecellKernelChannels", "sagecell", "The kernel's channels (WebSocket)",
                           "The same WebSocket as `/api/kernels/{kernel_id}/channels`.")),
    }


# -- accounts (singlecell/web/accounts.py: account_routes()) -------------------------------------

def _account_paths() -> Json:
    next_query = _query("next", _str(), "where to go after the form: a path of this site (anything else is "
                                        "`/library`, the default)")
    credentials = _obj({"_xsrf": _xsrf_field(), "name": _str("2 to 32 letters, digits, `_ . -`"),
                        "password": _str(format="password"), "next": _str("as the `next` query")},
                       ("_xsrf", "name", "password"))
    signup_fields = copy.deepcopy(credentials)
    signup_fields["properties"]["password2"] = _str("the password again; must match when given",
                                                    format="password")
    form_errors = (Forbidden.code, NotAllowed.code, NotFound.code, PayloadTooLarge.code, TooManyRequests.code,
                   _STORE)
    form_why = {NotAllowed.code: "the form's XSRF token is missing or wrong",
                NotFound.code: "this server has no accounts",
                TooManyRequests.code: "a rate limit"}
    token_why = {Unauthorized.code: "no valid Bearer token and no login session",
                 NotAllowed.code: "a cookie-authenticated call without its XSRF token"}
    return {
        "/signup": _path(
            r"/signup",
            get=_op("signupPage", "The sign-up form", "pages", security=_PAGE, parameters=[next_query],
                    responses={"200": _html("The form."), **_error_responses(_STORE, html=True)}),
            post=_op("signup", "Sign up", "pages", security=_XSRF_FORM,
                     description="10 sign-ups an hour per address.",
                     body=_body(_form(signup_fields, multipart=True), "the form"),
                     responses={
                         "303": _redirect("Signed up and logged in: to `next`; `Set-Cookie` starts the session."),
                         "400": _html("The form again, saying what to fix (the name or password is not valid, or "
                                      "the two passwords differ); an error page for a form that is not UTF-8."),
                         "409": _html("The form again: the name is taken."),
                         **_error_responses(*form_errors, html=True, why=form_why),
                     })),
        "/login": _path(
            r"/login",
            get=_op("loginPage", "The log-in form", "pages", security=_PAGE, parameters=[next_query],
                    responses={"200": _html("The form."), **_error_responses(_STORE, html=True)}),
            post=_op("login", "Log in", "pages", security=_XSRF_FORM,
                     description="10 logins per 5 minutes per address, and per name.",
                     body=_body(_form(credentials, multipart=True), "the form"),
                     responses={
                         "303": _redirect("Logged in: to `next`; `Set-Cookie` starts the session."),
                         "401": _html("The form again: the name and password do not match an account."),
                         "400": _html("An error page: the form is not UTF-8."),
                         **_error_responses(*form_errors, html=True, why=form_why),
                     })),
        "/logout": _path(
            r"/logout",
            post=_op("logout", "Log out", "pages", security=_FORM,
                     body=_body(_form(_obj({"_xsrf": _xsrf_field()}), multipart=True), "the form"),
                     responses={"303": _redirect("To `/library`; the session ends and its cookie is cleared."),
                                **_error_responses(Forbidden.code, NotAllowed.code, NotFound.code,
                                                   PayloadTooLarge.code, _STORE, html=True,
                                                   why={**form_why, NotFound.code: "this server has no accounts "
                                                                                   "(with a session cookie only)"})})),
        "/account": _path(
            r"/account",
            get=_op("accountPage", "The account page: API tokens", "pages", security=_PAGE,
                    responses={"200": _html("The page."),
                               "302": _redirect("Not logged in: to `/login?next=/account`."),
                               **_error_responses(_STORE, html=True)}),
            post=_op("accountForm", "Make or revoke an API token", "pages", security=_FORM,
                     body=_body(_form(_obj({"_xsrf": _xsrf_field(),
                                            "label": _str("a new token's label (at most 100 characters)"),
                                            "revoke": _str("the id of a token to revoke instead")}, ("_xsrf",)),
                                      multipart=True), "the form"),
                     responses={"200": _html("The page again; a new token is shown once."),
                                **_error_responses(Unauthorized.code, Forbidden.code, NotAllowed.code,
                                                   NotFound.code, PayloadTooLarge.code, _STORE, html=True,
                                                   why={**form_why, Unauthorized.code: "not logged in"})})),
        "/api/me": _path(
            r"/api/me",
            get=_op("me", "Who the caller is", "accounts", security=_ACCOUNT,
                    responses={"200": _ok("The account.", _ref("User")),
                               **_error_responses(Unauthorized.code, _STORE, why={
                                   Unauthorized.code: "not logged in and no Bearer token, or a token that is not "
                                                      "valid"})})),
        "/api/tokens": _path(
            r"/api/tokens",
            get=_op("listTokens", "The caller's API tokens", "accounts", security=_ACCOUNT_WRITE,
                    description="With the login cookie this read needs the XSRF token too, as a write does.",
                    responses={"200": _ok("The tokens, revoked ones too.", _ref("ApiTokens")),
                               **_error_responses(Unauthorized.code, NotAllowed.code, _STORE, why=token_why)}),
            post=_op("createToken", "Make an API token", "accounts", security=_ACCOUNT_WRITE,
                     body=_body(_json(_ref("NewTokenRequest"), {"label": "my script"}),
                                "JSON whatever the `Content-Type`; empty for the default label", required=False),
                     responses={"201": _ok("Made; the token is shown this once.", _ref("NewToken")),
                                **_error_responses(BadRequest.code, Unauthorized.code, *_BODY, NotAllowed.code,
                                                   _STORE, why={**token_why, BadRequest.code: "not JSON"})})),
        "/api/tokens/{token_id}": _path(
            rf"/api/tokens/({TOKEN_ID})",
            [_path_param("token_id", TOKEN_ID, "the token's id (not the token)", "0123456789abcdef")],
            delete=_op("revokeToken", "Revoke an API token", "accounts", security=_ACCOUNT_WRITE,
                       responses={"204": _no_content("Revoked."),
                                  **_error_responses(Unauthorized.code, NotAllowed.code, NotFound.code, _STORE,
                                                     why={**token_why,
                                                          NotFound.code: "the caller has no live token with this "
                                                                         "id"})})),
    }


# -- the snippet library (singlecell/web/library.py: library_routes()) ---------------------------

def _snippet_param() -> Json:
    return _path_param("snippet_id", SNIPPET_ID, "the snippet's id", _EXAMPLE_SNIPPET)


def _revision_param() -> Json:
    return _path_param("revision_id", REVISION_ID, "a revision of the snippet's history", _EXAMPLE_REVISION)


def _browse_params() -> list[Json]:
    return [
        _query("q", _str(), "words to search for in titles, tags, blurbs and code (all of them, whole)"),
        _query("tag", _str(), "a tag; its sub-tags too (`plotting` includes `plotting/3d`)"),
        _query("owner", _str(), "a user's name"),
        _query("sort", _str(enum=["new", "rating", "relevance"]), "default `relevance` with `q`, else `new`"),
        _query("page", _int(minimum=1, maximum=10_000, default=1), f"{LIBRARY_PAGE_SIZE} snippets a page"),
    ]


_NO_LIBRARY = "this server has no snippet library"


def _library_api_paths() -> Json:
    ref_example = {"id": _EXAMPLE_SNIPPET, "revision": _EXAMPLE_REVISION,
                   "url": f"http://127.0.0.1:8888/s/{_EXAMPLE_SNIPPET}"}
    draft_body = _body(_json(_ref("Draft"), {"title": "Shapes", "tags": ["geometry"],
                                             "files": {"shapes.py": "PI = 3.14159\n"}}),
                       "the content; JSON whatever the `Content-Type`")
    write_errors = (Unauthorized.code, NotAllowed.code, NotFound.code, _STORE)
    write_why = {Unauthorized.code: "no valid Bearer token and no login session",
                 NotAllowed.code: "not the snippet's owner, or a cookie-authenticated call without its XSRF token",
                 NotFound.code: f"no (live) snippet has this id, or {_NO_LIBRARY}"}
    read_why = {NotFound.code: f"no (live) snippet has this id, or {_NO_LIBRARY}"}
    draft_why = {**write_why, BadRequest.code: "not JSON, or content that breaks a rule (the message says which)",
                 PayloadTooLarge.code: "the body, a field, or the files pass their limit"}
    anyone_why = {**write_why, NotAllowed.code: "a cookie-authenticated call without its XSRF token"}
    return {
        "/api/snippets": _path(
            r"/api/snippets",
            get=_op("browseSnippets", "Browse and search", "library", security=_PUBLIC, parameters=_browse_params(),
                    responses={"200": _ok("A page of snippets.", _ref("SnippetPage")),
                               **_error_responses(BadRequest.code, NotFound.code, _STORE, why={
                                   BadRequest.code: "a bad `page`, `sort` or `tag`", NotFound.code: _NO_LIBRARY})}),
            post=_op("createSnippet", "Publish a snippet", "library", security=_ACCOUNT_WRITE, body=draft_body,
                     responses={"201": _ok("Published.", _ref("SnippetRef"), ref_example),
                                **_error_responses(BadRequest.code, *_BODY, *write_errors,
                                                   why={**draft_why, NotAllowed.code: anyone_why[NotAllowed.code],
                                                        NotFound.code: _NO_LIBRARY})})),
        "/api/snippets/{snippet_id}": _path(
            rf"/api/snippets/({SNIPPET_ID})", [_snippet_param()],
            get=_op("getSnippet", "A snippet's head revision", "library", security=_PUBLIC,
                    responses={"200": _ok("The snippet.", _ref("Snippet")),
                               **_error_responses(NotFound.code, _STORE, why=read_why)}),
            delete=_op("deleteSnippet", "Delete (or purge) a snippet", "library", security=_ACCOUNT_WRITE,
                       description="The owner only. Deleting hides it (its revisions stay reachable by id); "
                                   "purging removes it and what no other snippet shares.",
                       parameters=[_query("purge", _str(enum=["1", "true"]), "purge instead of delete")],
                       responses={"204": _no_content("Deleted."),
                                  **_error_responses(*write_errors, why=write_why)})),
        "/api/snippets/{snippet_id}/revisions": _path(
            rf"/api/snippets/({SNIPPET_ID})/revisions", [_snippet_param()],
            get=_op("listRevisions", "A snippet's history", "library", security=_PUBLIC,
                    responses={"200": _ok("The revisions, newest first.", _ref("History")),
                               **_error_responses(NotFound.code, _STORE, why=read_why)}),
            post=_op("saveRevision", "Save a new revision", "library", security=_ACCOUNT_WRITE, body=draft_body,
                     description="The owner only; content equal to the head's changes nothing.",
                     responses={"201": _ok("Saved.", _ref("SnippetRef"), ref_example),
                                **_error_responses(BadRequest.code, *_BODY, *write_errors, why=draft_why)})),
        "/api/snippets/{snippet_id}/revisions/{revision_id}": _path(
            rf"/api/snippets/({SNIPPET_ID})/revisions/({REVISION_ID})", [_snippet_param(), _revision_param()],
            get=_op("getRevision", "One revision", "library", security=_PUBLIC,
                    description="A deleted snippet's revisions stay reachable.",
                    responses={"200": _ok("The snippet at that revision.", _ref("Snippet")),
                               **_error_responses(NotFound.code, _STORE, why={
                                   NotFound.code: f"the snippet has no such revision, or {_NO_LIBRARY}"})})),
        "/api/snippets/{snippet_id}/fork": _path(
            rf"/api/snippets/({SNIPPET_ID})/fork", [_snippet_param()],
            post=_op("forkSnippet", "Fork a snippet", "library", security=_ACCOUNT_WRITE,
                     body=_body(_json(_ref("ForkRequest")), "JSON whatever the `Content-Type`; optional",
                                required=False),
                     responses={"201": _ok("A copy of the caller's own.", _ref("SnippetRef"), ref_example),
                                **_error_responses(BadRequest.code, *_BODY, *write_errors, why={
                                    **anyone_why, BadRequest.code: "not JSON, or a `revision` that is not a string",
                                    NotFound.code: f"no live snippet has this id, it has no such revision, or "
                                                   f"{_NO_LIBRARY}"})})),
        "/api/snippets/{snippet_id}/comments": _path(
            rf"/api/snippets/({SNIPPET_ID})/comments", [_snippet_param()],
            get=_op("listComments", "A snippet's comments", "library", security=_PUBLIC,
                    responses={"200": _ok("The comments, oldest first.", _ref("Comments")),
                               **_error_responses(NotFound.code, _STORE, why=read_why)}),
            post=_op("addComment", "Comment on a snippet, or on one line of one revision", "library",
                     security=_ACCOUNT_WRITE,
                     description=f"At most {COMMENTS_PER_MINUTE} comments a minute per account.",
                     body=_body(_json(_ref("NewComment"), {"body": "Nice **plot**."}),
                                "JSON whatever the `Content-Type`"),
                     responses={"201": _ok("Added.", _ref("Comment")),
                                **_error_responses(BadRequest.code, *_BODY, *write_errors, TooManyRequests.code,
                                                   why={**anyone_why,
                                                        BadRequest.code: "not a JSON object of the fields, an empty "
                                                                         "body, or a line comment naming no line of "
                                                                         "a file of a revision of the snippet",
                                                        PayloadTooLarge.code: "the body, or a comment over "
                                                                              f"{MAX_COMMENT} characters"})})),
        "/api/snippets/{snippet_id}/rating": _path(
            rf"/api/snippets/({SNIPPET_ID})/rating", [_snippet_param()],
            put=_op("rateSnippet", "Rate a snippet (again replaces)", "library", security=_ACCOUNT_WRITE,
                    body=_body(_json(_ref("RatingRequest"), {"stars": 5}), "JSON whatever the `Content-Type`"),
                    responses={"200": _ok("The snippet's rating now.", _ref("Rating"), {"rating": 4.5, "ratings": 2}),
                               **_error_responses(BadRequest.code, PayloadTooLarge.code, *write_errors,
                                                  why={**anyone_why,
                                                       BadRequest.code: "not JSON, or `stars` not a whole number "
                                                                        "from 1 to 5"})})),
        "/api/snippets/{snippet_id}/related/{other_id}": _path(
            rf"/api/snippets/({SNIPPET_ID})/related/({SNIPPET_ID})",
            [_snippet_param(), _path_param("other_id", SNIPPET_ID, "the related snippet's id", "k3mzq7w2ab")],
            put=_op("relateSnippet", "Link a related snippet", "library", security=_ACCOUNT_WRITE,
                    description="The owner only. Any body is ignored.",
                    responses={"200": _ok("The related snippets now.", _ref("Related")),
                               **_error_responses(BadRequest.code, PayloadTooLarge.code, *write_errors,
                                                  why={**write_why, BadRequest.code: "the two ids are the same",
                                                       NotFound.code: f"either snippet does not exist, or "
                                                                      f"{_NO_LIBRARY}"})}),
            delete=_op("unrelateSnippet", "Unlink a related snippet", "library", security=_ACCOUNT_WRITE,
                       responses={"200": _ok("The related snippets now.", _ref("Related")),
                                  **_error_responses(BadRequest.code, *write_errors,
                                                     why={**write_why, BadRequest.code: "the two ids are the same",
                                                          NotFound.code: f"either snippet does not exist, or "
                                                                         f"{_NO_LIBRARY}"})})),
        "/api/snippets/{snippet_id}/thumbnail": _path(
            rf"/api/snippets/({SNIPPET_ID})/thumbnail", [_snippet_param()],
            put=_op("setThumbnail", "Pick an image of a run as the thumbnail", "library", security=_ACCOUNT_WRITE,
                    description="The owner only: a PNG, JPEG or GIF file the run wrote (`name`), or an image it "
                                "displayed (`output`, its seq).",
                    body=_body(_json(_ref("ThumbnailRequest"), {"request": _EXAMPLE_ID, "output": 4}),
                               "JSON whatever the `Content-Type`"),
                    responses={"200": _ok("Set.", _ref("ThumbnailAnswer"),
                                          {"thumbnail": "/thumbnails/" + "0" * 64}),
                               **_error_responses(BadRequest.code, PayloadTooLarge.code, *write_errors,
                                                  why={**write_why,
                                                       BadRequest.code: "no request id, no such file or image "
                                                                        "output, or not a PNG, JPEG or GIF",
                                                       PayloadTooLarge.code: "the body, or an image over 2 MB"})})),
        "/thumbnails/{sha256}": _path(
            rf"/thumbnails/({SHA256})",
            [_path_param("sha256", SHA256, "the image's SHA-256", "0" * 64)],
            get=_op("getThumbnail", "A snippet's thumbnail", "library", security=_PUBLIC,
                    responses={"200": _response(
                        "The image; its URL names its content, so it is cached for good.",
                        {t: {"schema": _str(format="binary")} for t in ("image/png", "image/jpeg", "image/gif")},
                        {"Cache-Control": _header("`public, max-age=31536000, immutable`"),
                         "Content-Security-Policy": _header("`sandbox; default-src 'none'`")}),
                        **_error_responses(NotFound.code, _STORE, why={
                            NotFound.code: f"no thumbnail has this hash, or {_NO_LIBRARY}"})})),
        "/api/tags": _path(
            r"/api/tags",
            get=_op("listTags", "Tags in use, most used first (autocompletion)", "library", security=_PUBLIC,
                    parameters=[_query("prefix", _str(), "the tags' start (64 characters are used)")],
                    responses={"200": _ok("At most 20 tags.", _ref("Tags"),
                                          {"tags": [{"tag": "plotting", "snippets": 3}]}),
                               **_error_responses(NotFound.code, _STORE, why={NotFound.code: _NO_LIBRARY})})),
        **_raw_paths(),
    }


def _raw_paths() -> Json:
    raw_headers = {"Content-Security-Policy": _header("`sandbox; default-src 'none'`"),
                   "Content-Disposition": _header("`inline; filename*=UTF-8''<name>`")}
    raw = {"text/plain": {"schema": _str()}}
    zipped = {"application/zip": {"schema": _str(format="binary")}}
    zip_headers = {"Content-Disposition": _header("`attachment; filename=\"<id>-<revision[:8]>.zip\"`")}
    path_param = _path_param("path", ANY_PATH, "the file's path in the snippet (slashes are not escaped)", "main.py")
    head_why = {NotFound.code: f"no live snippet has this id, its head has no such file, or {_NO_LIBRARY}"}
    rev_why = {NotFound.code: f"the snippet has no such revision, or it has no such file, or {_NO_LIBRARY}"}
    return {
        "/s/{snippet_id}/raw/{path}": _path(
            rf"/s/({SNIPPET_ID})()/raw/({ANY_PATH})", [_snippet_param(), path_param],
            get=_op("rawFile", "A file of the head revision, as text", "library", security=_PUBLIC,
                    responses={"200": _response("The file, never a page.", raw, raw_headers),
                               **_error_responses(NotFound.code, _STORE, why=head_why)})),
        "/s/{snippet_id}/r/{revision_id}/raw/{path}": _path(
            rf"/s/({SNIPPET_ID})/r/({REVISION_ID})/raw/({ANY_PATH})", [_snippet_param(), _revision_param(), path_param],
            get=_op("rawRevisionFile", "A file of one revision, as text", "library", security=_PUBLIC,
                    responses={"200": _response(
                        "The file, never a page; a revision never changes, so it is cached for good.", raw,
                        {**raw_headers, "Cache-Control": _header("`public, max-age=31536000, immutable`")}),
                        **_error_responses(NotFound.code, _STORE, why=rev_why)})),
        "/s/{snippet_id}.zip": _path(
            rf"/s/({SNIPPET_ID})()\.zip", [_snippet_param()],
            get=_op("zipSnippet", "Every file of the head revision, zipped", "library", security=_PUBLIC,
                    responses={"200": _response("A zip of one folder, `<id>-<revision[:8]>`.", zipped, zip_headers),
                               **_error_responses(NotFound.code, _STORE, why=head_why)})),
        "/s/{snippet_id}/r/{revision_id}.zip": _path(
            rf"/s/({SNIPPET_ID})/r/({REVISION_ID})\.zip", [_snippet_param(), _revision_param()],
            get=_op("zipRevision", "Every file of one revision, zipped", "library", security=_PUBLIC,
                    responses={"200": _response("A zip of one folder, `<id>-<revision[:8]>`.", zipped, zip_headers),
                               **_error_responses(NotFound.code, _STORE, why=rev_why)})),
    }


def _library_page_paths() -> Json:
    login = _redirect("Not logged in: to `/login?next=<this page>`.")
    page_errors = (NotFound.code, _STORE)
    form_errors = (Forbidden.code, NotAllowed.code, NotFound.code, PayloadTooLarge.code, _STORE)
    form_why = {NotAllowed.code: "the form's XSRF token is missing or wrong, or the caller is not the owner",
                NotFound.code: f"no live snippet has this id, or {_NO_LIBRARY}"}
    draft_fields = {
        "type": "object", "required": ["_xsrf", "title"],
        "properties": {"_xsrf": _xsrf_field(), "title": _str(), "blurb": _str(),
                       "tags": _str("separated by commas or spaces"), "command": _str()},
        "patternProperties": {"^path-[0-9]{1,3}$": _str("file N's path"),
                              "^text-[0-9]{1,3}$": _str("file N's text")},
        "description": "files as `path-N` and `text-N` pairs"}
    draft_responses = {
        "303": _redirect("Saved: to `/s/{id}`."),
        "302": login,
        "400": _html("The form again, with what was typed and what to fix; or the error page, for a file with text "
                     "but no name."),
        **_error_responses(*form_errors, html=True, why=form_why),
    }

    def action(name: str, summary: str, fields: Json, done: str, *codes: str, why: dict[str, str] | None = None,
               required: tuple[str, ...] = ()) -> Json:
        return _path(
            rf"/s/({SNIPPET_ID})/(fork|comments|rating|delete|related|thumbnail)", [_snippet_param()],
            post=_op(f"{name}Form", summary, "pages", security=_FORM,
                     body=_body(_form(_obj({"_xsrf": _xsrf_field(), **fields}, ("_xsrf", *required)),
                                      multipart=True), "the form"),
                     responses={"303": _redirect(done), "302": login,
                                **_error_responses(*codes, *form_errors, html=True, why={**form_why, **(why or {})})}))

    return {
        "/library": _path(
            r"/library",
            get=_op("libraryPage", "Browse and search the library", "pages", security=_PAGE,
                    parameters=_browse_params(),
                    responses={"200": _html("The page."),
                               **_error_responses(BadRequest.code, *page_errors, html=True, why={
                                   BadRequest.code: "a bad `page`, `sort` or `tag`", NotFound.code: _NO_LIBRARY})})),
        "/new": _path(
            r"/new",
            get=_op("newSnippetPage", "The form for a new snippet", "pages", security=_PAGE,
                    responses={"200": _html("The form."), "302": login, **_error_responses(_STORE, html=True)}),
            post=_op("newSnippetForm", "Publish a snippet", "pages", security=_FORM,
                     body=_body(_form(draft_fields, multipart=True), "the form"),
                     responses=draft_responses)),
        "/s/{snippet_id}": _path(
            rf"/s/({SNIPPET_ID})", [_snippet_param()],
            get=_op("snippetPage", "A snippet: its files, a cell to run it, its comments", "pages", security=_PAGE,
                    parameters=[_query("comment", _str(), "`<path>:<line>`: open a line comment there")],
                    responses={"200": _html("The page."), **_error_responses(*page_errors, html=True, why={
                        NotFound.code: f"no live snippet has this id, or {_NO_LIBRARY}"})})),
        "/s/{snippet_id}/r/{revision_id}": _path(
            rf"/s/({SNIPPET_ID})/r/({REVISION_ID})", [_snippet_param(), _revision_param()],
            get=_op("revisionPage", "A snippet at one revision", "pages", security=_PAGE,
                    parameters=[_query("comment", _str(), "`<path>:<line>`: open a line comment there")],
                    responses={"200": _html("The page."), **_error_responses(*page_errors, html=True, why={
                        NotFound.code: f"the snippet has no such revision, or {_NO_LIBRARY}"})})),
        "/s/{snippet_id}/history": _path(
            rf"/s/({SNIPPET_ID})/history", [_snippet_param()],
            get=_op("historyPage", "Every revision; pick two to compare", "pages", security=_PAGE,
                    responses={"200": _html("The page."), **_error_responses(*page_errors, html=True, why={
                        NotFound.code: f"no live snippet has this id, or {_NO_LIBRARY}"})})),
        "/s/{snippet_id}/diff": _path(
            rf"/s/({SNIPPET_ID})/diff", [_snippet_param()],
            get=_op("diffPage", "What changed between two revisions", "pages", security=_PAGE,
                    parameters=[_query("from", _str(), "a revision; default the one before `to`"),
                                _query("to", _str(), "a revision; default the head")],
                    responses={"200": _html("The page."), **_error_responses(*page_errors, html=True, why={
                        NotFound.code: f"no snippet has this id, either revision is not of its history, or "
                                       f"{_NO_LIBRARY}"})})),
        "/s/{snippet_id}/edit": _path(
            rf"/s/({SNIPPET_ID})/edit", [_snippet_param()],
            get=_op("editSnippetPage", "The form to change a snippet", "pages", security=_PAGE,
                    responses={"200": _html("The form."), "302": login,
                               **_error_responses(NotAllowed.code, *page_errors, html=True, why={
                                   NotAllowed.code: "only the owner edits a snippet", **form_why})}),
            post=_op("editSnippetForm", "Save a new revision", "pages", security=_FORM,
                     body=_body(_form(draft_fields, multipart=True), "the form"), responses=draft_responses)),
        "/s/{snippet_id}/fork": action("fork", "Fork", {"revision": _str("default the head")}, "To the fork's page."),
        "/s/{snippet_id}/comments": action(
            "comment", "Comment", {"body": _str("Markdown"), "revision": _str("a line comment's revision"),
                                   "path": _str("a line comment's file"), "line": _str("a line comment's line")},
            "To `/s/{id}#comments` (or the revision's page, for a line comment).",
            BadRequest.code, TooManyRequests.code,
            why={BadRequest.code: "an empty comment, or a line comment naming no line",
                 TooManyRequests.code: f"more than {COMMENTS_PER_MINUTE} comments a minute (no `Retry-After` on "
                                       "pages)"}),
        "/s/{snippet_id}/rating": action(
            "rate", "Rate", {"stars": _str("1 to 5", pattern="^[1-5]$")}, "To `/s/{id}`.", BadRequest.code,
            why={BadRequest.code: "`stars` is not 1 to 5"}),
        "/s/{snippet_id}/delete": action("delete", "Delete (the owner)", {}, "To the owner's page `/u/{name}`."),
        "/s/{snippet_id}/related": action(
            "relate", "Link or unlink a related snippet (the owner)",
            {"other": _str("the other snippet's id or link"), "unlink": _str("`1` to unlink", enum=["1"])},
            "To `/s/{id}#related`.", BadRequest.code,
            why={BadRequest.code: "`other` names no snippet id, or the snippet itself"}, required=("other",)),
        "/s/{snippet_id}/thumbnail": action(
            "thumbnail", "Pick the thumbnail (the owner)",
            {"request": _str(pattern=_anchored(REQUEST_ID)), "name": _str("a file the run wrote"),
             "output": _str("or the seq of an image it displayed")},
            "To `/s/{id}`.", BadRequest.code,
            why={BadRequest.code: "no request id, no such image, or not a PNG, JPEG or GIF"}, required=("request",)),
        "/u/{name}": _path(
            r"/u/([^/]+)", [_path_param("name", "[^/]+", "a user's name", "examples")],
            get=_op("userPage", "Someone's snippets", "pages", security=_PAGE,
                    parameters=[_query("page", _int(minimum=1, maximum=10_000, default=1), "the page")],
                    responses={"200": _html("The page."),
                               **_error_responses(BadRequest.code, *page_errors, html=True, why={
                                   BadRequest.code: "a bad `page`",
                                   NotFound.code: f"nobody has this name, or {_NO_LIBRARY}"})})),
    }


# -- what Tornado and singlecell/web/apidocs.py add ----------------------------------------------

def _static_paths() -> Json:
    def static(operation_id: str, summary: str, description: str) -> Json:
        return _op(
            operation_id, summary, "pages", security=_PUBLIC, description=description,
            parameters=[_query("v", _str(), "a version hash (pages' `static_url`): cached for ten years")],
            responses={
                "200": _response("The file, with the type its extension says.", {"*/*": {"schema": _str(
                    format="binary")}}, {"Etag": _header("its hash"), "Last-Modified": _header("when it changed")}),
                "206": _response("Part of the file, for a `Range`.", {"*/*": {"schema": _str(format="binary")}}),
                "304": _response("Not Modified (`If-None-Match` or `If-Modified-Since`)."),
                "403": _html("A path outside the static folder, or a folder."),
                "404": _html("No such file (Tornado's error page)."),
                "416": _html("A `Range` the file does not hold."),
            })
    described = "Tornado's `StaticFileHandler` (it also answers `HEAD`); its errors are Tornado's HTML pages."
    return {
        "/static/{path}": _path(
            r"/static/(.*)", [_path_param("path", ".*", "a file of `static/` (slashes are not escaped)",
                                          "singlecell.js")],
            get=static("staticFile", "A static file: the embed script, SageMathCell's, MathJax, styles",
                       described + " `singlecell.js` is the script any page loads to get cells; "
                                   "`embedded_sagecell.js` SageMathCell's.")),
        "/favicon.ico": _path(r"/(favicon\.ico)", get=static("favicon", "The site's icon", described)),
        "/robots.txt": _path(r"/(robots\.txt)", get=static("robots", "robots.txt",
                                                           described + " No `robots.txt` is bundled: a 404.")),
    }


def _apidocs_paths() -> Json:
    return {
        "/openapi.json": _path(
            r"/openapi\.json",
            get=_op("openapi", "This document", "operations", security=_PUBLIC,
                    responses={"200": _response("The OpenAPI 3.1 document.", {"application/json": {
                        "schema": {"type": "object"}}}, {"Cache-Control": _header("`no-cache`")})})),
        "/api/docs": _path(r"/api/docs/?", get=_op("apiDocsPage", "This document, for people (Swagger UI)", "pages",
                                                   security=_PAGE, responses={"200": _html("The page.")})),
    }


# -- the document ---------------------------------------------------------------------------------

_DESCRIPTION = """\
A single-cell compute server: `POST /eval` runs Python in a fresh sandboxed kernel and answers with \
what it did; `POST /execute` queues it, and `/output/{id}` follows its Jupyter messages. Also: the \
Jupyter kernel API (for JupyterLab's `--gateway-url`, Thebe), SageMathCell's interfaces, and a \
library of runnable snippets with accounts.

Every error of the JSON routes is `{"error": {"code", "message"}}` with a 4xx/5xx status and a \
message that says what to fix; pages answer errors with an HTML page. A route that does not exist \
is a JSON 404 `not_found`; a method a route does not take is a 405 (`code: "http"`). An unexpected \
failure is a 500 (`code: "http"`).

CORS: an answer to a request with an `Origin` carries `Access-Control-Allow-Origin` for the \
origins of `--cors-origins` (`*` by default, never with credentials) and exposes `Retry-After` and \
`X-Singlecell-Status`; every route but the WebSockets and static files answers an `OPTIONS` \
preflight with 204 (`Access-Control-Max-Age: 7200`). A POST from a page of an origin not allowed \
is refused with 403 `origin_not_allowed` before anything is stored.

Request bodies are streamed and refused with 413 `too_large` as soon as they pass the route's \
limit (the rest is read and thrown away, so the client sees the answer). The limits named here \
(`--max-code-size`, `--max-upload-size`, …) are the server's settings, with their defaults.\
"""


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _add_unreadable_form_errors(paths: Json) -> None:
    """Every operation that takes a form may answer 400: a form that cannot be read (multipart
    without its boundary or headers, a field name that is not UTF-8) is refused by
    ``BodyHandler.form``, whatever the route. Added here once, not in each operation."""
    for item in paths.values():
        for method in HTTP_METHODS:
            operation = item.get(method)
            body = (operation or {}).get("requestBody", {}).get("content", {})
            if operation is None or not any(t in body for t in _FORM_TYPES) or "400" in operation["responses"]:
                continue
            page = any("text/html" in r.get("content", {}) for r in operation["responses"].values())
            operation["responses"].update(_error_responses(BadRequest.code, html=page, why={
                BadRequest.code: "the form could not be read (multipart without its boundary, say)"}))
            operation["responses"] = dict(sorted(operation["responses"].items()))


@functools.cache
def _document() -> Json:
    paths: Json = {**_compute_paths(), **_jupyter_paths(), **_sagecell_paths(), **_account_paths(),
                   **_library_api_paths(), **_library_page_paths(), **_static_paths(), **_apidocs_paths()}
    _add_unreadable_form_errors(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "singlecell", "version": singlecell.__version__, "description": _DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": _TAGS,
        "paths": paths,
        "components": {"schemas": _schemas(), "securitySchemes": _security_schemes()},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document: a fresh copy each call, so a caller may change it."""
    return copy.deepcopy(_document())


def paths_and_methods(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """Every documented operation as (path template, lower-case method)."""
    return {(path, method) for path, item in doc["paths"].items() for method in item if method in HTTP_METHODS}


def tornado_routes(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Each documented path template's Tornado route regexes: the one that serves it first, then
    catch-alls folded into it. Several paths may share a regex; together they are every route."""
    return {path: list(item["x-tornado-routes"]) for path, item in doc["paths"].items()}


__all__ = ["document", "paths_and_methods", "tornado_routes"]
