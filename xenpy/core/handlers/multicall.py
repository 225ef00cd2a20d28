"""``HYPERVISOR_multicall(call_list, nr_calls)`` (hypercall 13; ``xen/common/multicall.c:do_multicall``).

Each ``multicall_entry {ulong op; ulong result; ulong args[6]}`` (64 bytes on PV64) is issued in order through
the hypervisor's dispatcher, exactly as if the guest had made the call (``current`` is the caller), and its
``result`` field receives the return value. ``HYPERVISOR_iret`` in a batch ends the batch and the multicall
returns the iret's result (``mc_exit``). A nested ``multicall`` entry gets -EINVAL (re-entry is refused).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.hypercall import c_uint, hypercall_handler
from xenpy.core.pagetable import GuestFault, guest_handle_okay

if TYPE_CHECKING:
    from xenpy.core.domain import Vcpu

_ENTRY = struct.Struct("<8Q")
_U64 = (1 << 64) - 1
_EFAULT = -int(XenErrno.EFAULT)
_EINVAL = -int(XenErrno.EINVAL)
_in_multicall: set[int] = set()


@hypercall_handler(Hypercall.multicall)
def do_multicall(current: Vcpu, a1: int, a2: int, a3: int, a4: int, a5: int) -> int:
    """Issue ``nr_calls`` (esi) hypercalls described at ``call_list`` (rdi); returns 0.

    -EFAULT: the list is not accessible, an entry cannot be read, or a result cannot be written back (the batch
    stops there; earlier calls have run). -EINVAL: called from inside a multicall. A call that shuts the domain
    down ends the batch. Xen preempts a batch whose calls block or yield and resumes it later with the remaining
    entries; xenpy runs the remaining entries at once, which gives the same results.
    """
    call_list, nr_calls = a1, c_uint(a2)
    key = id(current)
    if key in _in_multicall:
        return _EINVAL
    if not guest_handle_okay(call_list, nr_calls, _ENTRY.size):
        return _EFAULT
    d = current.domain
    dispatch = d.hv.dispatcher.dispatch
    _in_multicall.add(key)
    try:
        for i in range(nr_calls):
            gva = call_list + i * _ENTRY.size
            try:
                op, _result, *args = _ENTRY.unpack(current.copy_from_guest(gva, _ENTRY.size))
            except GuestFault:
                return _EFAULT
            result = dispatch(current, op, args[0], args[1], args[2], args[3], args[4]) & _U64
            written = current.copy_to_guest(gva + 8, struct.pack("<Q", result))
            if op == Hypercall.iret:
                return result - (1 << 64) if result >> 63 else result
            if written:
                return _EFAULT
            if d.is_shutting_down:
                break
    finally:
        _in_multicall.discard(key)
    return 0
