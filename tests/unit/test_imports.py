"""The arrows between the project's folders are the ones docs/architecture.md's layout table allows."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("singlecell", "device", "filestore", "loadtests")


def layout() -> dict[str, set[str]]:
    """Path (``device/``, ``singlecell/cli.py``) → the modules it may import, from the table."""
    lines = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| path | what lives there | may import |")
    rules: dict[str, set[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        path, _, may_import = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for name in re.findall(r"`([^`]+)`", path):
            rules[name] = set(re.findall(r"`([\w.]+)`", may_import))
    return rules


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts)


def resolve(name: str) -> str:
    """A module name as the table spells it: a package is ``pkg.__init__``."""
    as_path = ROOT.joinpath(*name.split("."))
    return f"{name}.__init__" if (as_path / "__init__.py").exists() else name


def imports(path: Path, source: str | None = None) -> Iterator[tuple[str, int, bool]]:
    """(module imported, line, whether inside a function) for every project import of ``path``
    (whose text is ``source``, if given)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    package = module_of(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, up level - 1 packages
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                as_path = ROOT.joinpath(*full.split("."))
                names.append(full if as_path.with_suffix(".py").exists() or as_path.is_dir() else base)
        for name in names:
            if name.split(".")[0] in PACKAGES:
                yield resolve(name), node.lineno, id(node) in in_function


def allowed(rules: dict[str, set[str]], path: Path) -> tuple[str, set[str]]:
    relative = path.relative_to(ROOT).as_posix()
    rule = max((p for p in rules if relative == p or (p.endswith("/") and relative.startswith(p))), key=len)
    return rule, rules[rule] | {relative.split("/")[0]}  # a folder may always import itself


def covers(tokens: set[str], module: str) -> bool:
    return any(module == token or module.startswith(token + ".") for token in tokens)


def test_every_import_is_an_arrow_the_layout_table_allows() -> None:
    rules = layout()
    assert {"singlecell/", "device/", "filestore/", "loadtests/", "singlecell/cli.py"} <= set(rules)
    wrong = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rule, tokens = allowed(rules, path)
            for module, line, _ in imports(path):
                if not covers(tokens, module):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} (the row {rule} allows "
                                 f"{', '.join(sorted(tokens))})")
    assert not wrong, "\n".join(wrong)


def test_the_cli_imports_device_only_inside_its_command_functions() -> None:
    at_top = [line for module, line, inside in imports(ROOT / "singlecell" / "cli.py")
              if module.startswith("device.") and not inside]
    assert not at_top, f"singlecell/cli.py imports device at module level, line(s) {at_top}"


def test_the_web_tier_never_loads_device() -> None:
    code = ("import sys, singlecell.cli, singlecell.web.app, singlecell.client\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'device'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]"


def test_a_forbidden_arrow_is_caught() -> None:
    """The walk sees imports at any depth, absolute or relative, and names what the table says."""
    probe = ROOT / "filestore" / "probe.py"
    found = list(imports(probe, "def f() -> None:\n    from singlecell import protocol\n    from . import base\n"))
    _, tokens = allowed(layout(), probe)
    assert [(m, covers(tokens, m)) for m, _, _ in found] == [("singlecell.protocol", False), ("filestore.base", True)]
