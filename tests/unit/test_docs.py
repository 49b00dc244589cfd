"""What docs/architecture.md states as a table is the code's own table."""

from __future__ import annotations

from pathlib import Path

from singlecell.limits import LIMITS

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def table_after(header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header row starts with ``header``, cells stripped."""
    lines = ARCHITECTURE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_limits_table_is_singlecell_limits() -> None:
    documented = table_after("| limit | flag | ename |")
    expected = [[limit.what, f"`{limit.flag}`" + (", request `timeout`" if limit.key == "time" else ""),
                 f"`{limit.ename}`", f"`{limit.key}`", f"`{limit.status}`", limit.named_by,
                 limit.message.replace("{value}", "N").replace("{s}", "(s)")] for limit in LIMITS]
    assert documented == expected
