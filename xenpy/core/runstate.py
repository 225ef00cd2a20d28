"""Runstate accounting and the guest-registered runstate areas (spec 2).

Implements ``vcpu_runstate_change`` and ``vcpu_runstate_get`` (``xen/common/sched/core.c``) and
``update_runstate_area`` / ``_update_runstate_area`` (``xen/common/domain.c``, ``xen/arch/x86/domain.c``).

:func:`vcpu_runstate_change` is the **only** function that changes a vCPU's runstate. Its rules (spec 2.2):
no-op when the state does not change; time is added to the old state, and ``state_entry_time`` moves, only when
``delta = t - state_entry_time > 0``; the state always changes.

Invariants (checked by the property tests):

* ``sum(time) == state_entry_time - creation_ns`` of the stored struct, at every instant;
* ``time[]`` and ``state_entry_time`` never decrease;
* ``vcpu_runstate_get`` adds ``NOW - state_entry_time`` (when positive) to the current state and leaves
  ``state_entry_time`` alone, so its sum is ``max(NOW, state_entry_time) - creation_ns``;
* the guest area is written only at context switch and at registration (spec 2.4); with the
  XEN_RUNSTATE_UPDATE protocol the flag is set in the area only for the duration of one update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.vcpu import RUNSTATE, XEN_RUNSTATE_UPDATE
from xenpy.abi.xen import VMASST_TYPE_runstate_update_flag

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

__all__ = [
    "XEN_RUNSTATE_UPDATE",
    "RUNSTATE_blocked",
    "RUNSTATE_offline",
    "RUNSTATE_runnable",
    "RUNSTATE_running",
    "RunstateInfo",
    "update_runstate_area",
    "update_runstate_area_or_retry",
    "vcpu_runstate_change",
    "vcpu_runstate_get",
]

# Plain ints on the hot paths (the values of ``xenpy.abi.vcpu.RUNSTATE``).
RUNSTATE_running = int(RUNSTATE.RUNSTATE_running)
RUNSTATE_runnable = int(RUNSTATE.RUNSTATE_runnable)
RUNSTATE_blocked = int(RUNSTATE.RUNSTATE_blocked)
RUNSTATE_offline = int(RUNSTATE.RUNSTATE_offline)

_U64 = (1 << 64) - 1
_VMASST_RUNSTATE_UPDATE_FLAG = 1 << VMASST_TYPE_runstate_update_flag


class RunstateInfo:
    """Xen's ``struct vcpu_runstate_info`` as the hypervisor keeps it (spec 2.1).

    Attributes:
        state: one of ``RUNSTATE_running`` (0), ``runnable`` (1), ``blocked`` (2), ``offline`` (3).
        state_entry_time: system time (ns) of the last state change that moved time.
        time: ns spent in each state, indexed by state.
    """

    __slots__ = ("state", "state_entry_time", "time")

    def __init__(self, state: int, state_entry_time: int) -> None:
        self.state = state
        self.state_entry_time = state_entry_time
        self.time = [0, 0, 0, 0]

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """``(state, state_entry_time, time[0], time[1], time[2], time[3])``."""
        t = self.time
        return (self.state, self.state_entry_time, t[0], t[1], t[2], t[3])

    def __repr__(self) -> str:
        return f"RunstateInfo(state={self.state}, state_entry_time={self.state_entry_time}, time={self.time})"


def vcpu_runstate_change(v: Vcpu, new_state: int, t_ns: int) -> None:
    """``vcpu_runstate_change(v, new_state, t)`` (spec 2.2): the one place a runstate changes."""
    rs = v.runstate
    old = rs.state
    if new_state == old:
        return
    delta = t_ns - rs.state_entry_time
    if delta > 0:
        rs.time[old] += delta
        rs.state_entry_time = t_ns
    rs.state = new_state
    hooks = v.domain.system.runstate_hooks
    if hooks:
        for hook in hooks:
            hook(v, old, new_state, t_ns)


def vcpu_runstate_get(v: Vcpu, now_ns: int) -> tuple[int, int, int, int, int, int]:
    """``vcpu_runstate_get`` (spec 2.3): the runstate with ``now - state_entry_time`` (if > 0) added.

    Returns:
        ``(state, state_entry_time, time[0], time[1], time[2], time[3])``; ``state_entry_time`` unchanged.
    """
    rs = v.runstate
    state = rs.state
    entry = rs.state_entry_time
    t0, t1, t2, t3 = rs.time
    delta = now_ns - entry
    if delta > 0:
        if state == 0:
            t0 += delta
        elif state == 1:
            t1 += delta
        elif state == 2:
            t2 += delta
        else:
            t3 += delta
    return (state, entry, t0, t1, t2, t3)


def write_phys(mv: memoryview, maddr: int, data: bytes) -> None:
    """One store into a phys-registered area (a single ``write_atomic`` for 8-byte data)."""
    mv[maddr : maddr + len(data)] = data


def update_runstate_area(v: Vcpu) -> bool:
    """``update_runstate_area(v)`` (spec 2.4): write ``v``'s runstate to its registered area.

    * A phys area (VCPUOP_register_runstate_phys_area) takes precedence and always uses the
      XEN_RUNSTATE_UPDATE protocol with 8-byte writes of ``state_entry_time``; the VA area is then not
      written.
    * A VA area (VCPUOP_register_runstate_memory_area) is written with ``v``'s current page tables. With VM
      assist ``runstate_update_flag`` the most significant byte of ``state_entry_time`` (guest offset +15 on
      PV64, +11 on PV32) is written alone first with the flag, then the whole struct with the flag, then that
      byte again without it. Otherwise the struct is written once.

    Returns:
        False only when the VA copy of the whole struct failed completely on a PV64 guest.
    """
    d = v.domain
    rs = v.runstate
    codec = d.runstate_codec
    entry = rs.state_entry_time
    t = rs.time
    maddr = v.runstate_phys_maddr
    if maddr is not None:
        mv = d.system.machine.mv_u8
        entry_maddr = maddr + d.runstate_entry_offset
        flagged = entry | XEN_RUNSTATE_UPDATE
        write_phys(mv, entry_maddr, flagged.to_bytes(8, "little"))
        write_phys(mv, maddr, codec.pack(rs.state, flagged, t[0], t[1], t[2], t[3]))
        write_phys(mv, entry_maddr, entry.to_bytes(8, "little"))
        return True
    gva = v.runstate_guest_gva
    if not gva:
        return True
    if d.vm_assist & _VMASST_RUNSTATE_UPDATE_FLAG:
        byte_gva = (gva + d.runstate_entry_offset + 7) & _U64
        flagged = entry | XEN_RUNSTATE_UPDATE
        v.copy_to_guest(byte_gva, bytes((flagged >> 56,)))
        not_copied = v.copy_to_guest(gva, codec.pack(rs.state, flagged, t[0], t[1], t[2], t[3]))
        v.copy_to_guest(byte_gva, bytes((entry >> 56,)))
    else:
        not_copied = v.copy_to_guest(gva, codec.pack(rs.state, entry, t[0], t[1], t[2], t[3]))
    if d.is_compat:
        return True
    return not_copied != codec.size


def update_runstate_area_or_retry(v: Vcpu) -> None:
    """``_update_runstate_area(v)``: on complete failure outside guest kernel mode, retry on kernel entry."""
    if not update_runstate_area(v) and not v.in_kernel_mode:
        v.need_update_runstate_area = True


def retry_on_kernel_entry(v: Vcpu) -> None:
    """The PV toggle into guest kernel mode (``_toggle_guest_pt``): redo pending area updates."""
    if v.need_update_runstate_area and update_runstate_area(v):
        v.need_update_runstate_area = False
