"""A snippet's text as HTML: Markdown sanitised, code escaped and highlighted, diffs as data."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from singlecell.library.render import diff, highlight, highlight_css, markdown

HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html,<script>alert(1)</script>)",
    "<a href='https://e.org' onclick='alert(1)'>x</a>",
    "![x](https://e.org/x.png\"onerror=\"alert(1))",
    "<iframe src=https://e.org></iframe>",
    "<svg onload=alert(1)>",
    "<style>body{display:none}</style>",
    "```html\n<script>alert(1)</script>\n```",
    "<div style='position:fixed;inset:0'>cover</div>",
]


class Elements(HTMLParser):
    """Every element of an HTML text, with its attributes (what a browser would build)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN)
def test_markdown_keeps_no_markup_that_can_run_or_restyle_the_page(text: str) -> None:
    for tag, attributes in Elements(markdown(text)).found:
        assert tag in {"p", "pre", "code", "a", "em", "strong"}, (text, tag)
        assert not [name for name in attributes if name.startswith("on") or name == "style"], (text, attributes)
        href = (attributes.get("href") or "").strip().lower()
        assert not href or href.startswith(("https:", "http:", "mailto:")), (text, href)


def test_markdown_keeps_formatting_tables_and_safe_links() -> None:
    rendered = markdown("**bold** *it* `code`\n\n| a |\n|---|\n| 1 |\n\n[site](https://example.org)")
    assert "<strong>bold</strong>" in rendered and "<em>it</em>" in rendered and "<code>code</code>" in rendered
    assert "<table>" in rendered and 'href="https://example.org"' in rendered and 'rel="nofollow noopener' in rendered


def test_highlighted_code_is_escaped_one_string_a_line() -> None:
    lines = highlight("main.py", 'print("<script>")\nx = """a\nb"""\n')
    assert len(lines) == 3 and "<script>" not in "".join(lines) and "&lt;script&gt;" in lines[0]
    assert all(line.count("<span") == line.count("</span>") for line in lines)  # no span crosses a line
    assert highlight("data.unknown-kind", "<b>") == ["&lt;b&gt;"]


def test_a_diff_lists_added_removed_and_changed_files() -> None:
    changes = {c.path: c for c in diff({"a.py": "1\n2\n3", "gone.py": "x"}, {"a.py": "1\n2!\n3", "new.py": "y"})}
    assert {p: c.status for p, c in changes.items()} == {"a.py": "changed", "gone.py": "removed", "new.py": "added"}
    assert [(line.kind, line.text) for line in changes["a.py"].lines[1:]] == [
        ("same", "1"), ("removed", "2"), ("added", "2!"), ("same", "3")]
    assert [(line.kind, line.text) for line in changes["new.py"].lines[1:]] == [("added", "y")]


def test_the_sites_stylesheet_holds_the_highlighting_style() -> None:
    site = (Path(__file__).resolve().parents[2] / "static" / "site.css").read_text()
    assert highlight_css() in site


def test_highlighted_files_are_kept_by_content_within_a_budget() -> None:
    from singlecell.library.render import _Highlighted

    kept = _Highlighted(budget=10)
    a, b, c = ("py", b"a"), ("py", b"b"), ("py", b"c")
    kept.put(a, ("1234",))
    kept.put(b, ("1234",))
    assert kept.get(a) == ("1234",)  # a is now the most recently used
    kept.put(c, ("1234",))  # 12 characters > 10: the least recently used (b) goes
    assert (kept.get(a), kept.get(b), kept.get(c)) == (("1234",), None, ("1234",))
    kept.put(("py", b"big"), ("x" * 11,))  # larger than the whole budget: not kept, nothing dropped
    assert kept.get(("py", b"big")) is None and kept.get(a) is not None


def test_a_highlighted_file_is_the_same_from_the_cache_and_a_fresh_list() -> None:
    text = "def f(x):\n    return x < 1\n"
    first = highlight("f.py", text)
    first.append("changed by a caller")
    assert highlight("f.py", text) == first[:-1]
    assert highlight("f.txt", text) != first[:-1]  # another lexer, another entry
