"""Layouts are plain Python: construct is imported, and a structure's construct object built, at the first parse or
build; ``xenpy.abi.x86_32`` is built when first named."""

from __future__ import annotations

import json
import subprocess
import sys

from xenpy.abi import x86_64


def _modules_after(code: str) -> list[str]:
    watched = ("construct", "xenpy.abi.x86_32")
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_layouts_and_fast_codecs_need_no_construct() -> None:
    code = ("import xenpy.abi\nfrom xenpy.abi import x86_64\nfrom xenpy.abi.cstruct import fast_codec\n"
            "assert fast_codec(x86_64.start_info, {'console': 'domU'}).size == x86_64.start_info.sizeof() == 1168\n"
            "assert x86_64.vcpu_info.offset_of('time.system_time') == 48")
    assert _modules_after(code) == []


def test_parse_imports_construct_and_x86_32_is_built_when_named() -> None:
    code = ("from xenpy.abi import x86_64\nx86_64.vcpu_runstate_info.parse(bytes(48))\n"
            "import xenpy.abi\nassert xenpy.abi.x86_32.start_info.sizeof() == 1112")
    assert _modules_after(code) == ["construct", "xenpy.abi.x86_32"]


def test_the_construct_object_is_built_once_and_parses_the_layout() -> None:
    runstate = x86_64.vcpu_runstate_info
    assert runstate.construct is runstate.construct
    image = bytes(range(48))
    parsed = runstate.parse(image)
    assert parsed.state == int.from_bytes(image[:4], "little")
    assert runstate.build(parsed) == image[:4] + bytes(4) + image[8:]
    assert runstate.construct.sizeof() == runstate.sizeof() == 48
