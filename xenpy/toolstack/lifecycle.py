"""A domain's lifecycle as the toolstack sees it: the hypervisor's states and the toolstack's operations.

The hypervisor knows five states (:class:`~xenpy.core.domain.DomainState`: paused, running, shut down, crashed,
destroyed). The toolstack adds what it is doing to a domain: creating it, asking it to suspend, saving,
restoring, migrating. :class:`Lifecycle` follows both, enforces the legal transitions (:data:`TRANSITIONS`;
an illegal one is a :class:`LifecycleError` and changes nothing) and tells watchers of every change::

    created --unpause--> running <--pause/unpause--> paused
    running/paused --suspend request--> suspending --guest suspends--> suspended --> saving
    saving --written--> destroyed (or, a checkpoint, back to running)
    running --live migration's pre-copy--> migrating --> running --> suspending --> suspended --> migrating
    migrating --the receiver has it--> destroyed (or, if it failed, running again)
    restoring --> paused (a domain built from a stream)
    any live state --guest shutdown--> shut down | crashed;  any --destroy--> destroyed

:func:`lifecycle_of` gives the one :class:`Lifecycle` of a domain.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING

from xenpy.abi.sched import SHUTDOWN_suspend
from xenpy.core.domain import DomainState

if TYPE_CHECKING:
    from xenpy.core.domain import Domain


class LifecycleState(Enum):
    """Where a domain is in its life, for tools."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    SAVING = "saving"
    RESTORING = "restoring"
    MIGRATING = "migrating"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    DESTROYED = "destroyed"


S = LifecycleState
_ENDED = frozenset({S.SHUTDOWN, S.CRASHED, S.DESTROYED})
#: The legal transitions: state -> the states it may go to.
TRANSITIONS: dict[LifecycleState, frozenset[LifecycleState]] = {
    S.CREATED: frozenset({S.RUNNING, S.PAUSED, S.RESTORING, S.SUSPENDING, S.MIGRATING}) | _ENDED,
    S.RUNNING: frozenset({S.PAUSED, S.SUSPENDING, S.MIGRATING}) | _ENDED,
    S.PAUSED: frozenset({S.RUNNING, S.SUSPENDING, S.MIGRATING}) | _ENDED,
    S.SUSPENDING: frozenset({S.SUSPENDED, S.RUNNING, S.PAUSED}) | _ENDED,
    S.SUSPENDED: frozenset({S.SAVING, S.MIGRATING, S.RUNNING, S.PAUSED}) | _ENDED,
    S.SAVING: frozenset({S.RUNNING, S.PAUSED, S.SUSPENDED}) | _ENDED,
    S.MIGRATING: frozenset({S.RUNNING, S.PAUSED, S.SUSPENDED}) | _ENDED,
    S.RESTORING: frozenset({S.PAUSED, S.DESTROYED}),
    S.SHUTDOWN: frozenset({S.RUNNING, S.PAUSED, S.DESTROYED}),  # a cancelled suspend resumes
    S.CRASHED: frozenset({S.DESTROYED}),
    S.DESTROYED: frozenset(),
}
#: States a toolstack operation owns: the hypervisor's pause and unpause do not change them.
OPERATIONS = frozenset({S.SUSPENDING, S.SUSPENDED, S.SAVING, S.MIGRATING, S.RESTORING})

#: States a domain can be saved or migrated from (the guest must be able to run to answer the suspend request).
MOVABLE = frozenset({S.CREATED, S.RUNNING, S.PAUSED})

#: ``callback(domain, old, new)`` on every lifecycle change.
LifecycleWatcher = Callable[["Domain", LifecycleState, LifecycleState], None]


class LifecycleError(RuntimeError):
    """A transition the lifecycle does not allow (nothing changed)."""


class Lifecycle:
    """The lifecycle of one domain (see the module docstring); create it with :func:`lifecycle_of`."""

    def __init__(self, domain: Domain) -> None:
        self._domain = weakref.ref(domain)
        self.domid = domain.domid
        self._watchers: list[LifecycleWatcher] = []
        core = domain.state
        self._state = S.CREATED if core is DomainState.PAUSED else _from_core(domain, core, S.CREATED)
        domain.watch(self._on_core_change)

    @property
    def state(self) -> LifecycleState:
        """The current state."""
        return self._state

    def watch(self, callback: LifecycleWatcher) -> Callable[[], None]:
        """Call ``callback(domain, old, new)`` on every change; returns an unsubscribe function."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def move(self, new: LifecycleState) -> None:
        """Go to ``new``.

        Raises:
            LifecycleError: ``new`` is not reachable from the current state.
        """
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise LifecycleError(f"domain {self.domid} is {old.value}: it cannot become {new.value}")
        self._state = new
        domain = self._domain()
        if domain is not None:
            for callback in list(self._watchers):
                callback(domain, old, new)

    @contextmanager
    def operation(self, state: LifecycleState) -> Iterator[None]:
        """Hold ``state`` (one of :data:`OPERATIONS`) for a toolstack operation; on leaving, the state follows the
        domain again unless the operation moved it on (an exception leaves it as the domain is)."""
        self.move(state)
        try:
            yield
        finally:
            if self._state is state:
                self._settle()

    def _settle(self) -> None:
        domain = self._domain()
        if domain is None:
            self.move(S.DESTROYED)
            return
        self.move(_from_core(domain, domain.state, self._state))

    def _on_core_change(self, domain: Domain, _old: DomainState, new: DomainState) -> None:
        target = _from_core(domain, new, self._state)
        if self._state in OPERATIONS and target in (S.RUNNING, S.PAUSED):
            return  # the operation's own pause, unpause and resume
        if target is not self._state and target in TRANSITIONS[self._state]:
            self.move(target)


def _from_core(domain: Domain, core: DomainState, current: LifecycleState) -> LifecycleState:
    if core is DomainState.SHUTDOWN and domain.shutdown_reason == SHUTDOWN_suspend:
        return S.SUSPENDED if current in (S.SUSPENDING, S.SUSPENDED) else S.SHUTDOWN
    return {
        DomainState.RUNNING: S.RUNNING,
        DomainState.PAUSED: S.PAUSED,
        DomainState.SHUTDOWN: S.SHUTDOWN,
        DomainState.CRASHED: S.CRASHED,
        DomainState.DESTROYED: S.DESTROYED,
    }[core]


_LIFECYCLES: weakref.WeakKeyDictionary[Domain, Lifecycle] = weakref.WeakKeyDictionary()


def lifecycle_of(domain: Domain) -> Lifecycle:
    """The domain's :class:`Lifecycle` (made on first use, following the domain from its current state)."""
    lc = _LIFECYCLES.get(domain)
    if lc is None:
        lc = _LIFECYCLES[domain] = Lifecycle(domain)
    return lc
