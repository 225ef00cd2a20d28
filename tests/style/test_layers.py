"""The layer rule of docs/architecture.md: imports point downward only.

abi -> core -> hypercall -> loader -> hypervisor -> engine -> toolstack -> cli. A module may import xenpy modules
of its own layer or of layers below it, never above.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "xenpy"
LAYERS = ["abi", "core", "hypercall", "loader", "hypervisor", "engine", "toolstack", "cli"]
# Modules directly under xenpy/ and the layer they belong to.
TOP_LEVEL = {"__init__": "abi", "__main__": "cli", "hypervisor": "hypervisor"}


def layer_of_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "xenpy":
        return None
    if len(parts) == 1:
        return "abi"
    return parts[1] if parts[1] in LAYERS else TOP_LEVEL.get(parts[1], parts[1])


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_downward(path: Path) -> None:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    own = layer_of_module(".".join(relative.parts))
    assert own in LAYERS, f"{relative} is in no layer of {LAYERS}"
    for lineno, module in imports_of(path):
        target = layer_of_module(module)
        if target is None:
            continue
        assert target in LAYERS, f"{relative}:{lineno} imports {module}, which is in no layer"
        assert LAYERS.index(target) <= LAYERS.index(own), (
            f"{relative}:{lineno} ({own}) imports {module} ({target}): imports must point downward")


def test_every_layer_rule_is_checked() -> None:
    """The test sees the package's sources (guards against a wrong path making the test vacuous)."""
    assert any(p.parent.name == "abi" for p in SOURCES)
    assert any(p.parent.name == "cli" for p in SOURCES)
