"""``HYPERVISOR_set_trap_table(const trap_info_t *traps)`` (hypercall 0; spec 4.2, 5.7).

Implements ``xen/arch/x86/pv/callback.c:do_set_trap_table`` (PV64) and ``compat_set_trap_table`` (PV32): the
virtual IDT of the calling vCPU, ``vcpu.arch.trap_ctxt``, 256 entries ``(vector, flags, cs, address)``.

Invariants:

* Entries are installed one by one, in array order, each into slot ``vector``; a later entry for the same
  vector overwrites an earlier one. Entries installed before an error stay installed (Xen does not roll back).
* A stored ``cs`` always has RPL >= the guest kernel's (3 for PV64, 1 for PV32): a lower RPL is raised, as
  ``fixup_guest_code_selector`` does; the flags are stored as given.
* Xen preempts a long table with a continuation; xenpy walks it to the end in one call, with the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.abi.cstruct import fast_codec
from xenpy.abi.errno import HypercallError, XenErrno
from xenpy.abi.generated.hypercalls import Hypercall
from xenpy.abi.x86 import X86_NR_VECTORS
from xenpy.core.memory import PAGE_SIZE
from xenpy.core.pagetable import is_canonical
from xenpy.hypercall.handlers.callback_op import fixup_guest_code_selector
from xenpy.hypercall.registry import Effect, hypercall_handler

if TYPE_CHECKING:
    from xenpy.hypercall.context import HypercallContext

_U64 = (1 << 64) - 1


@hypercall_handler(Hypercall.set_trap_table, effects=Effect.NONE)
def do_set_trap_table(ctx: HypercallContext, traps: int) -> int:
    """Install entries of the calling vCPU's virtual IDT.

    Arguments: ``traps``, a guest pointer to an array of ``trap_info {u8 vector; u8 flags (bits
    0-1 DPL, bit 2 mask events); u16 cs; ulong address}`` (16 bytes each; PV32: 8).

    * ``traps == NULL``: every one of the 256 entries is zeroed; returns 0.
    * Otherwise the entries are read in order until one whose ``address`` is 0 (not installed); returns 0.
      For each entry before it:

      - -EFAULT: the entry cannot be read;
      - -EINVAL: ``address`` is not canonical (PV64 only);
      - else ``trap_ctxt[vector] = (vector, flags, cs with its RPL raised to 3 (PV32: 1), address)``.

      Entries installed before an -EFAULT or -EINVAL stay installed. An entry with vector 2 installs the NMI
      handler (spec 4.2).
    * As Xen's loop checks ``hypercall_preempt_check`` after each entry, a long array (nothing bounds it but
      its terminating entry) ends an invocation with a continuation at the next entry
      (:meth:`~xenpy.hypercall.context.HypercallContext.should_preempt`).
    """
    arch = ctx.vcpu.arch
    if traps == 0:
        arch.trap_ctxt[:] = [(0, 0, 0, 0)] * X86_NR_VECTORS
        return 0
    d = ctx.domain
    compat = d.is_compat
    codec = fast_codec(ctx.abi.trap_info)
    entry_size = codec.size
    gva = traps
    done = 0
    while True:
        # Read the entries that lie wholly in the current page at once (the page is readable or not as a
        # whole); an entry that crosses a page boundary is read on its own.
        nr_entries = max(1, (PAGE_SIZE - (gva & (PAGE_SIZE - 1))) // entry_size)
        data = ctx.copy_from_guest(gva, nr_entries * entry_size)
        for offset in range(0, len(data), entry_size):
            if ctx.should_preempt(done):
                return ctx.create_continuation(Hypercall.set_trap_table, (gva + offset) & _U64)
            vector, flags, cs, address = codec.unpack_from(data, offset)
            if address == 0:
                return 0
            if not compat and not is_canonical(address):
                raise HypercallError(XenErrno.EINVAL)
            arch.trap_ctxt[vector] = (vector, flags, fixup_guest_code_selector(d, cs), address)
            done += 1
        gva = (gva + len(data)) & _U64
