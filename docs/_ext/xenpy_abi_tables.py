"""Sphinx directive ``.. xenpy-abi-structures::``: the ABI reference, generated from the construct definitions.

Each structure gets one table with the x86_64 and x86_32 layouts side by side, so the page cannot drift from
the code: it is rebuilt from :mod:`xenpy.abi` every time the docs are built.
"""

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

from xenpy.abi.cstruct import layout_rows
from xenpy.abi.structs import HEADERS, build_abi, header_of


class AbiStructures(SphinxDirective):
    """Render every ABI structure, grouped by Xen public header."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        x64, x32 = build_abi("x86_64"), build_abi("x86_32")
        lines: list[str] = []
        for _module, header in HEADERS:
            names = [n for n in x64 if header_of("x86_64", n) == header]
            names += [n for n in x32 if n not in x64 and header_of("x86_32", n) == header]
            if not names:
                continue
            lines += [header, "-" * len(header), ""]
            for name in names:
                lines += _struct_table(name, x64.get(name), x32.get(name))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="xenpy.abi"), container)
        return container.children


def _struct_table(name, s64, s32) -> list[str]:
    def size(s):
        return f"{s.sizeof()} (align {s.c_align})" if s is not None else "-"

    rows64 = {r.path: r for r in layout_rows(s64)} if s64 is not None else {}
    rows32 = {r.path: r for r in layout_rows(s32)} if s32 is not None else {}
    order = list(rows64) + [p for p in rows32 if p not in rows64]
    out = [f".. rubric:: {name}", "", f"``sizeof``: x86_64 {size(s64)}; x86_32 {size(s32)}", ""]
    out += [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 22 8 8 22 8 8",
        "",
        "   * - field",
        "     - x86_64 type",
        "     - off",
        "     - size",
        "     - x86_32 type",
        "     - off",
        "     - size",
    ]
    for path in order:
        a, b = rows64.get(path), rows32.get(path)
        depth = (a or b).depth
        out.append(f"   * - {'· ' * depth}``{path}``")
        for row in (a, b):
            if row is None:
                out += ["     - -", "     - -", "     - -"]
            else:
                out += [f"     - ``{row.c_type}``", f"     - {row.offset}", f"     - {row.size}"]
    out.append("")
    return out


class HypercallCoverage(SphinxDirective):
    """Render which hypercalls xenpy answers, from the handler registry and ``NOT_IMPLEMENTED``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from xenpy.hypercall.handlers import hypercall_coverage

        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 8 30 62",
            "",
            "   * - #",
            "     - hypercall",
            "     - in xenpy",
        ]
        for nr, name, status in hypercall_coverage():
            lines += [f"   * - {nr}", f"     - ``{name}``", f"     - {status}"]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="xenpy.hypercall.handlers"), container)
        return container.children


def setup(app: Sphinx) -> dict:
    app.add_directive("xenpy-abi-structures", AbiStructures)
    app.add_directive("xenpy-hypercall-coverage", HypercallCoverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
