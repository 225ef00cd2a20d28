"""``HYPERVISOR_multicall(call_list, nr_calls)`` (hypercall 13; ``xen/common/multicall.c:do_multicall``).

Each ``multicall_entry {ulong op; ulong result; ulong args[6]}`` (64 bytes on PV64) is issued in order through
the hypervisor's dispatcher, exactly as if the guest had made the call (``current`` is the caller), and its
``result`` field receives the return value. ``HYPERVISOR_iret`` in a batch ends the batch and the multicall
returns the iret's result (``mc_exit``). A nested ``multicall`` entry gets -EINVAL (re-entry is refused).

Preemption, as ``do_multicall``: before every entry but the first, if ``hypercall_preempt_check`` says so (an event
for the caller, a softirq), or once :data:`~xenpy.hypercall.context.PREEMPT_ENTRIES` entries have run in this
invocation (:meth:`~xenpy.hypercall.context.HypercallContext.should_preempt`), the multicall ends with a
continuation for the remaining entries: ``call_list`` advanced to the next entry, ``nr_calls`` reduced. An entry
whose own call ends with a continuation has that continuation (its op and arguments) written over the entry, and
the multicall continues from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.core.pagetable import GuestFault, guest_handle_okay
from xenpy.hypercall.registry import Effect, c_long, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

_EFAULT = -int(XenErrno.EFAULT)
_EINVAL = -int(XenErrno.EINVAL)
_U64 = (1 << 64) - 1
_in_multicall: set[int] = set()


@hypercall_handler(Hypercall.multicall, effects=Effect.CLOCK | Effect.PAGE_TABLES)
def do_multicall(ctx: HypercallContext, call_list: int, nr_calls: int) -> int:
    """Issue ``nr_calls`` hypercalls described at ``call_list``; returns 0.

    -EFAULT: the list is not accessible, an entry cannot be read, or a result cannot be written back (the batch
    stops there; earlier calls have run). -EINVAL: called from inside a multicall. A call that shuts the domain
    down ends the batch. Preemption: see the module docstring.
    """
    key = id(ctx.vcpu)
    if key in _in_multicall:
        return _EINVAL
    entry = fast_codec(ctx.abi.multicall_entry)
    if not guest_handle_okay(call_list, nr_calls, entry.size):
        return _EFAULT
    result_offset = ctx.abi.multicall_entry.offset_of("result")
    result_size = ctx.abi.multicall_entry.type_of("result").size
    result_mask = (1 << (8 * result_size)) - 1
    d = ctx.domain
    _in_multicall.add(key)
    try:
        for i in range(nr_calls):
            gva = (call_list + i * entry.size) & _U64
            if ctx.should_preempt(i):
                return ctx.create_continuation(Hypercall.multicall, gva, nr_calls - i)
            try:
                op, _result, *args = entry.unpack(ctx.copy_from_guest(gva, entry.size))
            except GuestFault:
                return _EFAULT
            result = ctx.hypercall(op, args[0], args[1], args[2], args[3], args[4]) & _U64
            if ctx.continuation is not None:  # MCSF_call_preempted: the entry becomes its continuation
                sub_op, sub_args = ctx.continuation
                ctx.continuation = None
                try:
                    ctx.copy_to_guest(gva, entry.pack(sub_op, result, *sub_args, *args[len(sub_args):]))
                except GuestFault:
                    return _EFAULT
                return ctx.create_continuation(Hypercall.multicall, gva, nr_calls - i)
            if op == Hypercall.iret:
                try:
                    ctx.copy_to_guest(gva + result_offset, (result & result_mask).to_bytes(result_size, "little"))
                except GuestFault:
                    pass
                return c_long(result)
            try:
                ctx.copy_to_guest(gva + result_offset, (result & result_mask).to_bytes(result_size, "little"))
            except GuestFault:
                return _EFAULT
            if d.is_shutting_down:
                break
    finally:
        _in_multicall.discard(key)
    return 0
