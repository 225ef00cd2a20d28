"""Engines by name: create_engine, available_engines, DEFAULT_ENGINE."""

from __future__ import annotations

import pytest

from xenpy.engine import DEFAULT_ENGINE, Engine, UnknownEngine, available_engines, create_engine
from xenpy.engine.unicorn_engine import UnicornEngine
from xenpy.hypervisor import Hypervisor


def test_the_default_engine_is_available():
    assert DEFAULT_ENGINE == "unicorn"
    assert DEFAULT_ENGINE in available_engines()
    assert all(isinstance(what, str) and what for what in available_engines().values())


def test_create_engine_attaches_it_to_the_hypervisor():
    hv = Hypervisor(memory_mib=8)
    engine = create_engine("unicorn", hv, instructions_per_second=2_000_000_000)
    assert isinstance(engine, UnicornEngine) and isinstance(engine, Engine)
    assert engine.name == "unicorn" and engine.hv is hv
    assert hv.scheduler.executor is engine
    assert engine.instructions_per_second == 2_000_000_000


def test_an_unknown_engine_is_refused_with_the_names_available():
    hv = Hypervisor(memory_mib=8)
    with pytest.raises(UnknownEngine, match=r"unknown engine 'kvm' \(available: unicorn\)"):
        create_engine("kvm", hv)
    assert hv.scheduler.executor is None
