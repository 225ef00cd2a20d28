"""``vcpu_time_info`` updates: the pvclock record in vcpu_info and its secondary copies (spec 3.6).

Implements ``collect_time_info``, ``__update_vcpu_system_time``, ``update_secondary_system_time``,
``write_time_guest_area`` and ``force_update_secondary_system_time`` (``xen/arch/x86/time.c``).

System time comes from the hypervisor's clock. The time stamp a guest extrapolates from is the calibration
stamp of the current one-second epoch (Xen recalibrates once a second), so ``system_time`` and
``tsc_timestamp`` change at most once per second and the "skip unless something but the version changed" rule
of ``__update_vcpu_system_time`` has the same effect as in Xen.

Version protocol (spec 3.6): ``version = (version + 1) | 1`` (odd), write every field, ``version += 1`` (even).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.xen import XEN_PVCLOCK_TSC_STABLE_BIT
from xenpy.core.clock import NSEC_PER_SEC

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu
    from xenpy.core.system import System
    from xenpy.core.timers import Timer

#: Time calibration period (Xen's ``EPOCH``).
CALIBRATION_EPOCH_NS = NSEC_PER_SEC

_U32 = 0xFFFF_FFFF
_TIME_SIZE = 32


def version_update_begin(version: int) -> int:
    """``(version + 1) | 1``, as a uint32."""
    return ((version + 1) | 1) & _U32


def version_update_end(version: int) -> int:
    """``version + 1``, as a uint32."""
    return (version + 1) & _U32


def collect_time_info(v: Vcpu, version: int = 0) -> bytes:
    """``collect_time_info``: the 32-byte ``vcpu_time_info`` for ``v`` with ``version``."""
    hv = v.domain.system
    clock = hv.clock
    now = clock.now_ns()
    stamp = now - now % CALIBRATION_EPOCH_NS
    mul, shift = hv.tsc_scale
    flags = XEN_PVCLOCK_TSC_STABLE_BIT if hv.pvclock_tsc_stable else 0
    return v.domain.time_codec.pack(version & _U32, 0, clock.tsc_at(stamp), stamp, mul, shift, flags, 0, 0)


def _write_u32(mv: memoryview, offset: int, value: int) -> None:
    mv[offset : offset + 4] = value.to_bytes(4, "little")


def update_vcpu_system_time(v: Vcpu, force: bool = False) -> None:
    """``__update_vcpu_system_time(v, force)``: refresh ``vcpu_info.time``, then the secondary copy.

    Skipped (unless ``force``) when nothing but the version would change. When the secondary VA copy fails
    completely on a PV64 vCPU outside guest kernel mode, the record is kept for a retry on kernel entry.
    """
    vi = v.vcpu_info_mv
    cur = bytes(vi[32:64])
    cur_version = int.from_bytes(cur[0:4], "little")
    new = collect_time_info(v, cur_version)
    if not force and new == cur:
        return
    version = version_update_begin(cur_version)
    _write_u32(vi, 32, version)
    record = version.to_bytes(4, "little") + new[4:]
    vi[32:64] = record
    _write_u32(vi, 32, version_update_end(version))
    if not update_secondary_system_time(v, record) and not v.domain.is_compat and not v.in_kernel_mode:
        v.pending_system_time = record


def init_time_calibration(system: System) -> Timer:
    """Arm Xen's calibration timer: at every ``CALIBRATION_EPOCH_NS`` of system time, each pCPU's running vCPU
    gets its time record refreshed (``time_calibration`` -> ``local_time_calibration`` ->
    ``update_vcpu_system_time(current)``, spec 3.6), so a vCPU that runs for seconds without a context switch
    still sees a new stamp each second. A descheduled vCPU gets the new stamp at its next switch-in.
    """

    def calibrate(_data: object) -> None:
        for pcpu in system.scheduler.pcpus:
            if pcpu.curr is not None:
                update_vcpu_system_time(pcpu.curr)
        arm()

    def arm() -> None:
        now = system.clock.now_ns()
        # Fires at the next epoch boundary (a timer fires once NOW() > expires).
        timer.set(now - now % CALIBRATION_EPOCH_NS + CALIBRATION_EPOCH_NS - 1)

    timer = system.timers.timer(calibrate, None, "time-calibration", housekeeping=True)
    arm()
    return timer


def force_update_vcpu_system_time(v: Vcpu) -> None:
    """``force_update_vcpu_system_time``."""
    update_vcpu_system_time(v, True)


def _write_time_guest_area(mv: memoryview, maddr: int, record: bytes) -> None:
    version = int.from_bytes(record[0:4], "little")
    _write_u32(mv, maddr, version)
    mv[maddr : maddr + _TIME_SIZE] = record
    _write_u32(mv, maddr, version_update_end(version))


def update_secondary_system_time(v: Vcpu, record: bytes) -> bool:
    """``update_secondary_system_time``: write ``record`` (odd version) to the phys or VA secondary area.

    Returns:
        False if the VA area's version field could not be written at all.
    """
    maddr = v.time_phys_maddr
    if maddr is not None:
        _write_time_guest_area(v.domain.system.machine.mv_u8, maddr, record)
        return True
    gva = v.time_info_guest_gva
    if not gva:
        return True
    if v.copy_to_guest(gva, record[0:4]) == 4:
        return False
    v.copy_to_guest(gva, record)
    end = version_update_end(int.from_bytes(record[0:4], "little"))
    v.copy_to_guest(gva, end.to_bytes(4, "little"))
    return True


def force_update_secondary_system_time(v: Vcpu, maddr: int) -> None:
    """``force_update_secondary_system_time``: populate a new phys area at ``maddr`` (ends with version 0)."""
    record = collect_time_info(v, _U32)
    _write_time_guest_area(v.domain.system.machine.mv_u8, maddr, record)
