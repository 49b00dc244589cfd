"""A snippet's text as safe HTML: Markdown (blurbs, comments), highlighted code, and diffs.

Everything here comes from people and is shown to other people, so it is hostile input:
Markdown is rendered with raw HTML off and then sanitised with nh3 (an allow-list of tags and
attributes, ``http``/``https``/``mailto`` links only, ``rel="nofollow noopener"``); code goes
through Pygments, which escapes it. The pages insert only what these functions return.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

MAX_HIGHLIGHT = 512 * 1024  # characters; a larger file is shown as plain, escaped text
HIGHLIGHT_CACHE_CHARS = 32 * 1024 * 1024  # characters of highlighted files kept per process

_TAGS = {"p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a", "h1", "h2",
         "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}, "ol": {"start"}}


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # commonmark with raw HTML off; tables and strikethrough on; links only as written (no linkify)
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def markdown(text: str) -> str:
    """Markdown as sanitised HTML."""
    rendered = _markdown().render(text)
    return nh3.clean(rendered, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="nofollow noopener noreferrer")


@lru_cache(maxsize=64)
def _lexer_for(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=False)


class _Highlighted:
    """Highlighted files by (lexer, hash of the text), least recently used out first, at most
    ``budget`` characters in all. A revision never changes, so a snippet viewed often is
    highlighted once per process, not once per view (a third of a snippet page's time)."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._lines: OrderedDict[tuple[str, bytes], tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> tuple[str, ...] | None:
        with self._lock:
            lines = self._lines.get(key)
            if lines is not None:
                self._lines.move_to_end(key)
            return lines

    def put(self, key: tuple[str, bytes], lines: tuple[str, ...]) -> None:
        size = sum(map(len, lines))
        with self._lock:
            if size > self._budget or key in self._lines:
                return
            self._lines[key] = lines
            self._used += size
            while self._used > self._budget:
                _, dropped = self._lines.popitem(last=False)
                self._used -= sum(map(len, dropped))


_highlighted = _Highlighted(HIGHLIGHT_CACHE_CHARS)


def highlight(path: str, text: str) -> list[str]:
    """The file's lines as highlighted HTML, one string a line (for line numbers and line comments)."""
    if len(text) > MAX_HIGHLIGHT:
        return [html.escape(line) for line in text.split("\n")]
    lexer = _lexer_for(path)
    key = (type(lexer).__name__, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    lines = _highlighted.get(key)
    if lines is None:
        rendered = pygments_highlight(text, lexer, HtmlFormatter(nowrap=True)).split("\n")
        wanted = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))  # no empty line after the last
        lines = tuple((rendered + [""] * wanted)[:wanted])
        _highlighted.put(key, lines)
    return list(lines)


def highlight_css() -> str:
    """The style of the highlighted code: its rules for ``.code-view`` only (static/site.css holds
    a copy, checked by a test)."""
    rules = str(HtmlFormatter(style="default").get_style_defs(".code-view")).splitlines()
    return "\n".join(rule for rule in rules if rule.startswith(".code-view ."))


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "same", "added", "removed", "hunk"
    old: int | None  # line numbers, 1-based
    new: int | None
    text: str  # plain text: the template escapes it


@dataclass(frozen=True)
class FileDiff:
    path: str
    status: str  # "added", "removed", "changed", "same"
    lines: list[DiffLine]


def diff(old: dict[str, str], new: dict[str, str], context: int = 3) -> list[FileDiff]:
    """Every file of two revisions, compared line by line (a unified diff, as data)."""
    out = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        status = "added" if a is None else "removed" if b is None else "same" if a == b else "changed"
        lines: list[DiffLine] = []
        if status != "same":
            a_lines = a.split("\n") if a is not None else []
            b_lines = b.split("\n") if b is not None else []
            matcher = difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False)
            for group in matcher.get_grouped_opcodes(context):
                first = group[0]
                lines.append(DiffLine("hunk", first[1] + 1, first[3] + 1,
                                      f"@@ -{first[1] + 1} +{first[3] + 1} @@"))
                for op, i1, i2, j1, j2 in group:
                    if op == "equal":
                        lines += [DiffLine("same", i1 + k + 1, j1 + k + 1, a_lines[i1 + k]) for k in range(i2 - i1)]
                        continue
                    lines += [DiffLine("removed", i + 1, None, a_lines[i]) for i in range(i1, i2)]
                    lines += [DiffLine("added", None, j + 1, b_lines[j]) for j in range(j1, j2)]
        out.append(FileDiff(path, status, lines))
    return out
