"""Dependencies point inward: adapters → billing → ledger (DESIGN.md, STYLE.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("ledger"), ids=str)
def test_ledger_imports_neither_billing_nor_adapters(path: Path) -> None:
    assert not imports(path) & {"billing", "adapters"}


@pytest.mark.parametrize("path", modules("billing"), ids=str)
def test_billing_never_imports_adapters(path: Path) -> None:
    assert "adapters" not in imports(path)


DOMAIN = [p for p in modules("ledger") + modules("billing") if "postgres" not in p.parts]


@pytest.mark.parametrize("path", DOMAIN, ids=str)
def test_domain_modules_import_only_the_standard_library_and_each_other(path: Path) -> None:
    # stdnum: pure check-digit functions (the NPI's Luhn digit), no I/O.
    outside = imports(path) - STDLIB - {"ledger", "billing", "stdnum"}
    assert outside == set(), f"{path} imports {outside}"
