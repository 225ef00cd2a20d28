"""Live migration of a PV domain (``xl migrate``, VirtualBox's teleport): pre-copy while the guest runs, then a
short final pause.

:func:`migrate_domain` writes the same stream as a save, in rounds: every page first while the guest runs on,
then the pages the guest changed since they were sent, round after round, each round as long as the guest ran
while the previous one was sent. The pages a round finds changed are those whose contents differ from what was
sent (the copy kept of each page), which is what log-dirty tracking of guest writes reports. When the pages
left would take no longer than ``max_downtime_ms`` to send (at the rate measured so far), or after
``max_rounds``, the guest is asked to suspend; the pages still changed, the TSC info, shared info and vCPU state
follow, and the receiver answers (:mod:`~xenpy.toolstack.migration.transport`). Only once it has restored the
domain is the source destroyed; if anything fails before, the source resumes where it was (SCHEDOP_shutdown
returns 1) and nothing is lost.

:func:`receive_domain` is the other side: the stream into a new domain (:mod:`.restore`), the hypervisor's clock
moved on to the save's time, the answer sent; the caller runs the domain.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xenpy.core.domain import DomainState
from xenpy.core.memory import OutOfMachineMemory
from xenpy.engine.runner import STEP_NS, run_domain_until_stopped
from xenpy.toolstack.lifecycle import MOVABLE, LifecycleState, lifecycle_of
from xenpy.toolstack.migration.restore import RestoredDomain, SavedConfig, restore_stream, saved_config
from xenpy.toolstack.migration.save import (
    SUSPEND_TIMEOUT_S,
    SaveError,
    StreamSaver,
    domain_config,
    resume_cancelled,
    suspend_domain,
)
from xenpy.toolstack.migration.stream import SaveFileError, StreamReader
from xenpy.toolstack.migration.transport import Link, MigrationError

if TYPE_CHECKING:
    from xenpy.core.domain import Domain
    from xenpy.hypervisor import Hypervisor
    from xenpy.toolstack.xenstore import Store

#: Downtime aimed at when none is given (ms), as VirtualBox's teleport default.
DEFAULT_MAX_DOWNTIME_MS = 250
#: Pre-copy rounds at most (the first, full one included), as libxc's default live iterations.
DEFAULT_MAX_ROUNDS = 5

#: ``progress(round, pages_in_round, pages_left)`` after each pre-copy round.
MigrateProgress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class MigrationSummary:
    """What a migration did.

    Attributes:
        rounds: pre-copy rounds (the first sends every page).
        pages_sent: pages sent in all, rounds and final pause included.
        pages_resent: pages sent again because the guest changed them.
        final_pages: pages sent while the guest was suspended.
        bytes: bytes of the stream.
        downtime_ms: host time from the guest's suspend to the receiver's answer.
        max_downtime_ms: the bound aimed at.
        suspend_ns: system time the guest took to suspend.
    """

    rounds: int
    pages_sent: int
    pages_resent: int
    final_pages: int
    bytes: int
    downtime_ms: float
    max_downtime_ms: float
    suspend_ns: int

    @property
    def met(self) -> bool:
        """The downtime stayed within the bound."""
        return self.downtime_ms <= self.max_downtime_ms


def migrate_domain(
    hv: Hypervisor,
    d: Domain,
    link: Link,
    *,
    cmdline: str = "",
    suspend_cancel: bool = True,
    store: Store | None = None,
    max_downtime_ms: float = DEFAULT_MAX_DOWNTIME_MS,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    timeout_s: float = SUSPEND_TIMEOUT_S,
    progress: MigrateProgress | None = None,
) -> MigrationSummary:
    """Move ``d`` over ``link`` while it runs; the source domain is destroyed once the receiver has it.

    Raises:
        SaveError: the domain cannot be migrated (not running, no p2m published, it did not suspend).
        MigrationError: the link broke or the receiver refused the domain (the source then runs on).
    """
    lifecycle = lifecycle_of(d)
    if lifecycle.state not in MOVABLE:
        raise SaveError(f"domain {d.domid} is {lifecycle.state.value}: only a running domain can be migrated")
    was_paused = d.controller_pause_count > 0
    saver = StreamSaver(hv, d, link.wfile)
    config = domain_config(d, cmdline=cmdline, suspend_cancel=suspend_cancel)
    config["xenpy"]["sent_at_ns"] = hv.now_ns()
    resent = 0
    try:
        with lifecycle.operation(LifecycleState.MIGRATING):
            saver.start(config)
            snapshot = saver.frames()
            started = time.monotonic()
            left = saver.send_pages(np.arange(saver.nr_pages, dtype=np.int64), live=True)
            round_s = time.monotonic() - started
            seconds_per_page = round_s / max(1, saver.nr_pages)
            rounds = 1
            if progress is not None:
                progress(rounds, saver.nr_pages, len(left))
            while True:
                run_domain_until_stopped(hv, d, max_guest_ns=max(STEP_NS, int(round_s * 1e9)), timeout_s=timeout_s,
                                         unpause=False)  # fmt: skip
                if d.state not in (DomainState.RUNNING, DomainState.PAUSED):
                    raise SaveError(f"domain {d.domid} became {d.state.value} during the migration")
                changed = np.union1d(saver.changed_since(snapshot), left)
                if rounds >= max_rounds or len(changed) * seconds_per_page * 1000 <= max_downtime_ms / 2:
                    break
                started = time.monotonic()
                snapshot[changed] = saver.frames()[changed]
                left = saver.send_pages(changed, live=True)
                round_s = time.monotonic() - started
                resent += len(changed) - len(left)
                rounds += 1
                if progress is not None:
                    progress(rounds, len(changed), len(left))
    except OSError as error:
        raise MigrationError(f"the link broke: {error.strerror or error}") from None
    suspend_ns = suspend_domain(hv, d, store=store, timeout_s=timeout_s)
    paused = time.monotonic()
    with lifecycle.operation(LifecycleState.MIGRATING):
        try:
            final = np.union1d(saver.changed_since(snapshot), left)
            saver.send_pages(final)
            saver.finish()
            link.wfile.flush()
            link.read_verdict()
        except (SaveError, MigrationError, OSError) as error:
            if suspend_cancel:
                resume_cancelled(d, paused=was_paused)
            if isinstance(error, OSError):
                raise MigrationError(f"the link broke: {error.strerror or error}") from None
            raise
        downtime_ms = (time.monotonic() - paused) * 1000
        hv.destroy_domain(d)
    return MigrationSummary(rounds, saver.pages_sent, resent, len(final), saver.writer.bytes_written, downtime_ms,
                            max_downtime_ms, suspend_ns)  # fmt: skip


#: ``make_hypervisor(config, sent_at_ns)``: the hypervisor to restore into, made once the stream's header says
#: what the domain needs (and when the sender started).
HypervisorMaker = Callable[[SavedConfig, int], "Hypervisor"]


def receive_domain(link: Link, make_hypervisor: HypervisorMaker) -> tuple[Hypervisor, RestoredDomain]:
    """Restore the domain a sender sends on ``link`` (paused), move the clock on to the save's time (the domain
    is paused meanwhile) and tell the sender; returns the hypervisor and the domain.

    Raises:
        SaveFileError: the stream is not restorable (the sender is told, and keeps its domain).
        OutOfMachineMemory: the domain does not fit (the sender is told likewise).
        MigrationError: the link broke.
    """
    reader = StreamReader(link.rfile)
    try:
        header = reader.headers()
        cfg = saved_config(header)
        sent_at = header.config.get("xenpy", {}).get("sent_at_ns", 0)
        hv = make_hypervisor(cfg, int(sent_at) if isinstance(sent_at, int) else 0)
        restored = restore_stream(hv, reader, header)
    except (SaveFileError, OutOfMachineMemory) as error:
        with contextlib.suppress(OSError):
            link.send_verdict(str(error))
        raise
    if hv.now_ns() < restored.saved_at_ns:
        hv.run_until(restored.saved_at_ns)
    try:
        link.send_verdict()
    except OSError as error:
        hv.destroy_domain(restored.domain)
        raise MigrationError(f"the link broke before the sender was told: {error.strerror or error}") from None
    return hv, restored
