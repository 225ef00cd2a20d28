"""#SS versus #GP for non-canonical addresses on the Unicorn engine (Intel SDM vol. 3 6.14; XTF memop-seg).

QEMU's TCG raises #GP(0) for every non-canonical access; the hardware, and so Xen, raises #SS(0) when the
access goes through the stack segment. ``guest_code.PROGRAMS["stackfault"]`` runs one faulting instruction
(chosen by r12, at the non-canonical address in r14) in guest kernel mode, or in user mode after
HYPERVISOR_iret (%rsp there is r14, so the bounce goes to the stack_switch stack); the #SS handler sets
r15 = 12, the #GP handler r15 = 13, and both copy their frame to DATA + 0x800.
"""

from __future__ import annotations

import guest_code as gc
import pytest

from xenpy.abi.sched import SHUTDOWN_poweroff
from xenpy.abi.x86 import X86_EXC_GP, X86_EXC_SS

NONCANONICAL = 0x8000_0000_4000_0000  # XTF memop-seg's address
KERNEL_CS, USER_CS, SS_SEL = 0xE030, 0xE033, 0xE02B

#: r12 -> (the faulting instruction's bytes, to find its RIP; the vector; user mode).
CASES = {
    1: ("c6450000", X86_EXC_SS, False),  # mov byte ptr [rbp], 0
    2: ("c6040400", X86_EXC_SS, False),  # mov byte ptr [rsp + rax], 0: canonical %rsp, the SIB index
    3: ("c60000", X86_EXC_GP, False),  # mov byte ptr [rax], 0
    4: ("64c6450000", X86_EXC_GP, False),  # mov byte ptr fs:[rbp], 0
    5: ("c9", X86_EXC_SS, False),  # leave, with %rbp non-canonical
    6: ("500f0b", X86_EXC_SS, True),  # push rax, %rsp non-canonical
    8: ("c60424000f0b", X86_EXC_SS, True),  # mov byte ptr [rsp], 0
    9: ("e8f4ffffff", X86_EXC_SS, True),  # call rel32
}


def _run(guest, case: int, r14: int = NONCANONICAL, memory: dict[int, int] | None = None):
    g = guest("stackfault")
    g.trap_table((12, 4, gc.HANDLER), (13, 4, gc.HANDLER + 0x80))
    for gva, value in (memory or {}).items():
        g.write_u64(gva, value)
    g.set_regs(r12=case, r14=r14, rbx=g.vcpu.arch.ctrlreg[3] >> 12)  # rbx: the user L4 (the kernel's)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    return g


@pytest.mark.parametrize("case", sorted(CASES))
def test_noncanonical_access_vector(guest, case):
    """A non-canonical access through %ss (a %rsp/%rbp base, push, call, leave) delivers #SS(0) at the
    instruction; through another segment (%rax base, an %fs override) #GP(0)."""
    code, vector, user = CASES[case]
    g = _run(guest, case)
    assert g.regs("r15")["r15"] == vector
    _rcx, _r11, error_code, rip, cs, _rflags, rsp, ss = g.read_u64s(gc.DATA + 0x800, 8)
    assert error_code == 0
    assert rip == gc.CODE + gc.PROGRAMS["stackfault"][0].code.index(bytes.fromhex(code))
    if user:
        assert (cs & 0xFFFF, rsp, ss) == (USER_CS, NONCANONICAL, SS_SEL)
    else:
        assert (cs & 0xFFFF, rsp, ss) == (KERNEL_CS & ~3, gc.STACK_TOP, SS_SEL)


def test_ret_to_a_noncanonical_target_stays_gp(guest):
    """A ``ret`` on a good stack whose return address is non-canonical is #GP(0), not a stack fault."""
    user_stack = gc.DATA + 0x600
    g = _run(guest, 7, r14=user_stack, memory={user_stack: NONCANONICAL})
    assert g.regs("r15")["r15"] == X86_EXC_GP
    assert g.read_u64s(gc.DATA + 0x800, 3)[2] == 0


def test_privileged_instructions_are_still_emulated(guest):
    """The #GP(0) path still emulates privileged instructions (``mov %cr3``) and injects #GP for the rest."""
    g = guest("priv")
    g.trap_table((13, 4, gc.HANDLER))
    g.set_regs(r12=1, rbp=NONCANONICAL)
    g.run()
    assert g.dom.shutdown_code == SHUTDOWN_poweroff, g.dom.crash_reason
    assert g.regs("r13", "r14") == {"r13": 0, "r14": g.vcpu.arch.ctrlreg[3]}
