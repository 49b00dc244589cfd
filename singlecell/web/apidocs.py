"""The API's own description: ``GET /openapi.json`` (the OpenAPI 3.1 document of
:mod:`singlecell.web.openapi`) and ``GET /api/docs`` (Swagger UI over it, from ``static/``)."""

from __future__ import annotations

import functools
import json
from typing import Any

from singlecell.web.handlers import BaseHandler, PageMixin, Services
from singlecell.web.openapi import document


@functools.cache
def _document_json() -> bytes:
    return json.dumps(document(), indent=1).encode()


class OpenApiHandler(BaseHandler):
    """``GET /openapi.json``: the document, for code generators, fuzzers and Swagger UI."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")  # it changes with the server's version
        self.finish(_document_json())


class ApiDocsPage(PageMixin, BaseHandler):
    """``GET /api/docs``: the document rendered for people."""

    def get(self) -> None:
        self.page("api_docs.html")


def apidocs_routes(services: Services) -> list[Any]:
    args = {"services": services}
    return [
        (r"/openapi\.json", OpenApiHandler, args),
        (r"/api/docs/?", ApiDocsPage, args),
    ]


__all__ = ["apidocs_routes"]
