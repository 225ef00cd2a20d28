"""The import graph of ``xenpy``: no cycles outside the domain model, and none of the shapes the layering replaced.

Every import counts, also those under ``TYPE_CHECKING`` and inside functions: a cycle held together by them is
still a cycle for a reader. Xen's own ``domain``/``vcpu``/scheduler knot is accepted inside ``xenpy.core``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "xenpy"
SOURCES = sorted(PACKAGE.rglob("*.py"))
HANDLERS = sorted((PACKAGE / "hypercall" / "handlers").glob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in SOURCES}


def imported_modules(path: Path) -> set[str]:
    """xenpy modules imported anywhere in ``path`` (``from pkg import mod`` counts as ``pkg.mod``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("xenpy"):
                found.add(name)
    found.discard(module_name(path))
    return found


def all_imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def strongly_connected_components() -> list[set[str]]:
    """Tarjan's algorithm over :data:`GRAPH`; only components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return components


def test_no_import_cycle_outside_the_domain_model() -> None:
    for component in strongly_connected_components():
        outside = sorted(m for m in component if not m.startswith("xenpy.core."))
        assert not outside, f"import cycle through {sorted(component)}"


def test_the_graph_is_not_empty() -> None:
    assert "xenpy.core.domain" in GRAPH["xenpy.core.system"]
    assert "xenpy.hypercall.registry" in GRAPH["xenpy.hypercall.dispatcher"]


# Shapes the hypercall layer replaced: a handler reaching the hypervisor or the machine-wide state, decoding
# structures with hand-written formats, or taking raw registers.
FORBIDDEN_IN_HANDLERS = {
    r"\.system\b": "reaches the machine-wide state (use the HypercallContext)",
    r"\.hv\b|\bHypervisor\b": "reaches the hypervisor object",
    r"^import struct\b|\bstruct\.(Struct|pack|unpack)": "hand-written struct format (use xenpy.abi / fast_codec)",
    r"\blegacy_handler\b": "raw-register handler",
    r"\bxenpy\.engine\b": "reaches a CPU engine",
}


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.name)
def test_handlers_use_only_their_context(path: Path) -> None:
    text = path.read_text()
    for pattern, why in FORBIDDEN_IN_HANDLERS.items():
        for match in re.finditer(pattern, text, re.M):
            line = text.count("\n", 0, match.start()) + 1
            pytest.fail(f"{path.name}:{line}: {match.group(0)!r} {why}")


PRIVATE_DOMAIN_FIELDS = re.compile(r"\._(alloc_next_gva|alloc_end_gva|builder_pin_seen|last_state)\b")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_private_domain_fields_stay_in_the_domain(path: Path) -> None:
    if path == PACKAGE / "core" / "domain.py":
        return
    match = PRIVATE_DOMAIN_FIELDS.search(path.read_text())
    assert match is None, f"{path.name} touches Domain's private {match.group(0)}"


# Homes the layering removed: the hypercall layer lived in core/, the CPU-bound hypercalls in engine/, the
# composition root in core/.
REMOVED_MODULES = ("core/hypercall.py", "core/handlers", "core/hypervisor.py", "engine/hypercalls.py")


@pytest.mark.parametrize("relative", REMOVED_MODULES)
def test_replaced_modules_stay_gone(relative: str) -> None:
    assert not (PACKAGE / relative).exists(), f"xenpy/{relative} was replaced (see docs/architecture.md)"


ENGINE_SOURCES = sorted((PACKAGE / "engine").glob("*.py"))


@pytest.mark.parametrize("path", ENGINE_SOURCES, ids=lambda p: p.name)
def test_engines_take_hypercall_facts_from_the_registry(path: Path) -> None:
    """An engine learns what a hypercall touches from the declared effects (xenpy.engine.effects), never
    from hypercall numbers of its own, and never reaches into the handlers' modules."""
    text = path.read_text()
    for pattern in (r"\bHypercall\.\w+", r"_MMU_HYPERCALLS|_CLOCK_FREE"):
        match = re.search(pattern, text)
        assert match is None, f"{path.name}: {match.group(0)!r} (use EffectTables.from_registry())"
    reached = sorted(m for m in all_imports(path) if m.startswith("xenpy.hypercall.handlers."))
    assert not reached, f"{path.name} imports handler modules {reached}"


def test_every_declared_dependency_is_imported() -> None:
    """pyproject's runtime dependencies are each imported somewhere in xenpy (no dead dependency)."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    imported = {m.split(".")[0] for p in SOURCES for m in all_imports(p)}
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()
        assert name in imported, f"pyproject.toml declares {name}, which xenpy never imports"


# x86 facts have one home, xenpy/abi/x86.py; elsewhere they are imported (an alias is an import, not a value).
X86_FACT = re.compile(
    r"^_?(PAGE_SHIFT|PAGE_SIZE|PAGE_(OFFSET_MASK|PRESENT|RW|USER|PWT|PCD|ACCESSED|DIRTY|PSE|PAT|GLOBAL|NX|MASK)|X86_\w+|MSR_\w+"
    r"|FIRST_RESERVED_GDT_ENTRY|XEN_L4_SLOTS|PERDOMAIN_\w+|MAX_LDT_ENTS|GDT_ENTRIES_PER_PAGE)\s*(:[^=]*)?=\s*(.*)$",
    re.M,
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_x86_facts_are_defined_once(path: Path) -> None:
    if path == PACKAGE / "abi" / "x86.py":
        return
    for match in X86_FACT.finditer(path.read_text()):
        value = match.group(4)
        where = f"{path.name}: {match.group(1)} = {value}"
        assert re.fullmatch(r"x86\.\w+", value), f"{where} (import it from xenpy.abi.x86)"
