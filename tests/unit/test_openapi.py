"""The OpenAPI document (singlecell/web/openapi.py) describes every route the app serves, and no
route it does not: both directions are checked against the app's own routing table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.routing
import tornado.web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filestore.sql import SqlFileStore
from singlecell.config import Config
from singlecell.store.sql import SqlStore
from singlecell.web.app import make_app
from singlecell.web.handlers import BodyHandler, NotFoundHandler
from singlecell.web.openapi import document, paths_and_methods, tornado_routes

METHODS = ("get", "post", "put", "patch", "delete")
#: methods a handler has only to refuse, each with why (and the status it answers)
REFUSED = {(r"/logout$", "get"): "405: logging out is a form's POST"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tornado.web.Application]:
    folder = tmp_path_factory.mktemp("openapi")
    store, files = SqlStore(f"sqlite:///{folder}/store.db"), SqlFileStore(f"sqlite:///{folder}/files.db")
    try:
        yield make_app(Config(data_dir=str(folder)), store, files)
    finally:
        store.close()
        files.close()


def rules(app: tornado.web.Application) -> list[tuple[str, type[tornado.web.RequestHandler]]]:
    """(regex, handler class) of every route, in the order Tornado tries them."""
    found = []
    for rule in app.wildcard_router.rules:
        assert isinstance(rule.matcher, tornado.routing.PathMatches)
        found.append((rule.matcher.regex.pattern, rule.target))
    return found


def implemented(handler: type[tornado.web.RequestHandler]) -> set[str]:
    """The methods the handler answers with more than a 405: its own, and for a BodyHandler the
    POST and PUT whose ``accept`` and ``accept_put`` it overrides."""
    methods = {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}
    if issubclass(handler, BodyHandler):
        methods -= {"post", "put"}
        methods |= {m for m, hook in (("post", "accept"), ("put", "accept_put"))
                    if getattr(handler, hook) is not getattr(BodyHandler, hook)}
    return methods


def example_path(template: str, operation: dict[str, Any], path_item: dict[str, Any]) -> str:
    """The template with each parameter replaced by its example, or by a value its pattern allows."""
    parameters = {p["name"]: p for p in [*path_item.get("parameters", []), *operation.get("parameters", [])]
                  if p["in"] == "path"}

    def value(match: re.Match[str]) -> str:
        parameter = parameters[match.group(1)]
        schema = parameter.get("schema", {})
        if "example" in parameter:
            return str(parameter["example"])
        if "examples" in schema:
            return str(schema["examples"][0])
        if "enum" in schema:
            return str(schema["enum"][0])
        pattern = schema.get("pattern")
        assert pattern, f"{template}: parameter {match.group(1)} has no example and no pattern"
        return generate(pattern)

    return re.sub(r"\{([^}]+)\}", value, template)


def generate(pattern: str) -> str:
    found: list[str] = []

    @settings(max_examples=1, database=None, suppress_health_check=list(HealthCheck))
    @given(st.from_regex(pattern, fullmatch=True).filter(lambda s: "/" not in s and s.isprintable()))
    def take(text: str) -> None:
        found.append(text)

    take()
    return found[0]


def served_by(app: tornado.web.Application, path: str) -> tuple[str, type[tornado.web.RequestHandler]] | None:
    for regex, handler in rules(app):
        if re.fullmatch(regex.removesuffix("$"), path):
            return regex, handler
    return None


def operations() -> Iterator[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    for template, item in document()["paths"].items():
        for method in METHODS:
            if method in item:
                yield template, method, item[method], item


def test_the_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_documented_operation_is_served_by_a_handler_that_implements_it(
        app: tornado.web.Application) -> None:
    for template, method, operation, item in operations():
        path = example_path(template, operation, item)
        route = served_by(app, path)
        served = route is not None and route[1] is not NotFoundHandler
        assert served and route is not None, f"{method.upper()} {template}: no route serves {path}"
        assert method in implemented(route[1]), f"{method.upper()} {template}: {route[1].__name__} has no {method}()"


def test_every_route_and_method_the_app_serves_is_documented(app: tornado.web.Application) -> None:
    documented: dict[str, set[str]] = {}  # regex → methods some documented operation reaches it with
    for template, method, operation, item in operations():
        route = served_by(app, example_path(template, operation, item))
        if route is not None:
            documented.setdefault(route[0], set()).add(method)
        # a catch-all that only refuses what the path's own route does not match (an id that is
        # not 32 hex digits, say) is folded into that path: its x-tornado-routes name it
        for regex in tornado_routes(document())[template][1:]:
            documented.setdefault(regex + "$", set()).add(method)
    missing = []
    for regex, handler in rules(app):
        if handler is NotFoundHandler:
            continue
        for method in sorted(implemented(handler) - documented.get(regex, set())):
            if (regex, method) not in REFUSED:
                missing.append(f"{method.upper()} {regex} ({handler.__name__})")
    assert not missing, "routes the document lacks:\n" + "\n".join(missing)


def test_paths_and_methods_lists_every_operation() -> None:
    assert paths_and_methods(document()) == {(t, m) for t, m, _, _ in operations()}


def test_every_operation_documents_its_errors_with_the_shared_error_schema() -> None:
    for template, method, operation, _ in operations():
        assert operation.get("operationId"), f"{method.upper()} {template} has no operationId"
        for status, response in operation["responses"].items():
            json_body = response.get("content", {}).get("application/json") if "$ref" not in response else None
            if status.startswith(("4", "5")) and json_body is not None:
                assert json_body["schema"] == {"$ref": "#/components/schemas/Error"}, (
                    f"{method.upper()} {template} {status} is not an Error")

