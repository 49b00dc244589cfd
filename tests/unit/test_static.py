"""The committed bundles in static/ are built from the sources in static/src (static/src/build.mjs).

The server runs without Node, so the bundles are committed; this fails when a source (or the
lockfile) changed and ``npm ci && npm run build`` was not run. It recomputes the hash the build
writes on each bundle's first line."""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.servers import ROOT

BUNDLES = ["static/singlecell.js", "static/singlecell-frame.js", "static/singlecell-widgets.js",
           "static/embedded_sagecell.js"]
#: absolute URLs a bundle holds as text, never fetched: jQuery's licence comment, and two links
#: in postcss's warning messages (bundled with the widgets' CSS support)
TEXT_ONLY_URLS = {"https://jquery.com/", "https://jquery.com/license/",
                  "https://evilmartians.com/chronicles/postcss-8-plugin-migration", "https://www.w3ctech.com/topic/2226"}


def source_hash() -> str:
    """As ``sourceHash()`` in static/src/build.mjs."""
    digest = hashlib.sha256()
    inputs = sorted(p.name for p in (ROOT / "static/src").iterdir())
    for path in [*(f"static/src/{name}" for name in inputs), "package-lock.json"]:
        digest.update(path.encode() + b"\0")
        digest.update((ROOT / path).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_bundle_is_built_from_the_current_sources(bundle: str) -> None:
    first_line = (ROOT / bundle).read_text(encoding="utf-8").split("\n", 1)[0]
    match = re.match(r"/\* singlecell ([0-9a-f]{64}):", first_line)
    assert match, f"{bundle} has no build hash; rebuild it: npm ci && npm run build"
    assert match.group(1) == source_hash(), f"{bundle} is older than static/src: npm ci && npm run build"


def test_mathjax_is_served_by_us_in_one_file() -> None:
    mathjax = ROOT / "static/mathjax"
    assert (mathjax / "VERSION").read_text().strip().startswith("3.")
    assert (mathjax / "LICENSE").exists()
    source = (mathjax / "tex-svg-full.js").read_text(encoding="utf-8")
    assert "MathJax" in source and len(source) > 1_000_000


def test_the_bundles_fetch_nothing_from_elsewhere() -> None:
    for bundle in BUNDLES:
        text = (ROOT / bundle).read_text(encoding="utf-8")
        # the only absolute URLs are in licence comments and the SVG/XML namespaces
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        fetched = {u for u in urls if not re.match(r"https?://(www\.w3\.org|github\.com|opensource\.org)", u)}
        assert not fetched - TEXT_ONLY_URLS, f"{bundle} names {sorted(fetched - TEXT_ONLY_URLS)[:5]}"
        assert not re.search(r"unpkg\.com|jsdelivr|cdnjs", text), f"{bundle} names a CDN"


def test_swagger_ui_is_served_by_us_with_its_licence() -> None:
    swagger = ROOT / "static/swagger-ui"
    assert (swagger / "VERSION").read_text().startswith("5.")
    assert "Apache License" in (swagger / "LICENSE").read_text()
    bundle = (swagger / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    assert "SwaggerUIBundle" in bundle and len(bundle) > 1_000_000
    # validatorUrl null: the page never sends the document to validator.swagger.io
    assert "validatorUrl: null" in (swagger / "api-docs.js").read_text()
