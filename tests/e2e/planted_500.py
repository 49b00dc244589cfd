"""``singlecell`` with one bug planted, for tests/e2e/test_fuzz.py to show that the fuzzer finds a
500: ``POST /permalink`` raises on code longer than ten characters. Run as the CLI is:
``python tests/e2e/planted_500.py serve --port …``. Nothing else differs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from singlecell.cli import main
from singlecell.web import handlers

_accept = handlers.PermalinkHandler.accept


async def _planted(self: handlers.PermalinkHandler, *args: str) -> None:
    if len(self.body) > len(b'{"code": "1234567890"}'):
        raise ZeroDivisionError("the planted bug")
    await _accept(self, *args)


if __name__ == "__main__":
    handlers.PermalinkHandler.accept = _planted  # type: ignore[method-assign]
    sys.exit(main())
