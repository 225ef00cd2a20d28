"""The toolstack's lifecycle of a domain (xenpy.toolstack.lifecycle): the transition table, the states it takes
from the hypervisor, and the illegal moves it refuses. The save and restore sequences are in test_migration."""

from __future__ import annotations

from collections import deque

import pytest

from xenpy.hypervisor import Hypervisor
from xenpy.toolstack.lifecycle import OPERATIONS, TRANSITIONS, LifecycleError, LifecycleState, lifecycle_of

S = LifecycleState


def test_every_state_has_its_row_and_every_life_can_end() -> None:
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.DESTROYED] == frozenset()
    for start in S:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in TRANSITIONS[todo.popleft()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        assert S.DESTROYED in seen or start is S.DESTROYED, f"{start} can never be destroyed"
    for op in OPERATIONS:
        assert S.DESTROYED in TRANSITIONS[op], f"a domain {op.value} can be destroyed"


def test_the_lifecycle_follows_the_hypervisor() -> None:
    hv = Hypervisor()
    d = hv.create_domain(max_vcpus=1, memory_mib=4)
    lc = lifecycle_of(d)
    assert lc is lifecycle_of(d)
    seen: list[tuple[str, str]] = []
    lc.watch(lambda _d, old, new: seen.append((old.value, new.value)))
    assert lc.state is S.CREATED
    d.unpause()
    d.pause()
    d.unpause()
    hv.destroy_domain(d)
    assert seen == [("created", "running"), ("running", "paused"), ("paused", "running"),
                    ("running", "destroyed")]


def test_an_illegal_move_is_refused_and_changes_nothing() -> None:
    hv = Hypervisor()
    d = hv.create_domain(max_vcpus=1, memory_mib=4)
    lc = lifecycle_of(d)
    d.unpause()
    with pytest.raises(LifecycleError, match="is running: it cannot become saving"):
        lc.move(S.SAVING)
    assert lc.state is S.RUNNING
    hv.destroy_domain(d)
    with pytest.raises(LifecycleError, match="is destroyed"):
        lc.move(S.RUNNING)


def test_an_operation_keeps_its_state_through_pause_and_settles_after() -> None:
    hv = Hypervisor()
    d = hv.create_domain(max_vcpus=1, memory_mib=4)
    d.unpause()
    lc = lifecycle_of(d)
    with lc.operation(S.SUSPENDING):
        d.pause()
        assert lc.state is S.SUSPENDING
        d.unpause()
    assert lc.state is S.RUNNING
