"""The hypervisor area the Unicorn engine maps into every PV64 guest, and the CPU state it enters it with.

Xen's slots of a guest L4 (256..271) hold the hypervisor; of these the engine fills slot 260, Xen's per-domain
area (``PERDOMAIN_VIRT_START``): each vCPU's GDT (the 14 guest GDT frames of ``set_gdt``, then Xen's reserved
page with the flat descriptors), the trampoline whose ``iretq`` enters CPL3, and its stack. The tables and
pages live in a per-domain buffer (:class:`HypervisorArea`) mapped after machine memory, supervisor-only, so
the guest cannot touch them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xenpy.abi.x86 import (
    FIRST_RESERVED_GDT_ENTRY,
    GDT_ENTRIES_PER_PAGE,
    PAGE_ACCESSED,
    PAGE_DIRTY,
    PAGE_NX,
    PAGE_PRESENT,
    PAGE_RW,
    PAGE_USER,
    PERDOMAIN_VIRT_START,
)
from xenpy.core.memory import PAGE_SHIFT, PAGE_SIZE
from xenpy.engine.pv64 import GUEST_CR0, GUEST_CR4_FIXED, GUEST_EFER

#: Page-table entry of the hypervisor's own pages: present, writable, accessed, dirty, supervisor only.
HV_PTE = PAGE_PRESENT | PAGE_RW | PAGE_ACCESSED | PAGE_DIRTY
#: Pages of a vCPU's slot in the per-domain area: 14 guest GDT pages, Xen's GDT page, a zero page (the rest of
#: the 16-page GDT), the trampoline, the trampoline's stack; rounded up to 32 pages.
VCPU_AREA_PAGES = 32
GDT_GUEST_PAGES = FIRST_RESERVED_GDT_ENTRY // GDT_ENTRIES_PER_PAGE
PAGE_XEN_GDT = 14
PAGE_ZERO = 15
PAGE_TRAMPOLINE = 16
PAGE_STACK = 17
#: GDTR limit of a PV vCPU: 16 pages (``LAST_RESERVED_GDT_BYTE``).
GDT_LIMIT = 16 * PAGE_SIZE - 1
#: Xen's reserved GDT entries (index inside page 14, i.e. selector >> 3 minus 0x1c00).
XEN_GDT_ENTRIES = {
    0x1C01: 0x00AF_9B00_0000_FFFF,  # 0xe008 ring 0 code, 64-bit
    0x1C02: 0x00CF_9300_0000_FFFF,  # 0xe010 ring 0 data
    0x1C04: 0x00CF_FB00_0000_FFFF,  # 0xe023 ring 3 code, compatibility
    0x1C05: 0x00CF_F300_0000_FFFF,  # 0xe02b ring 3 data
    0x1C06: 0x00AF_FB00_0000_FFFF,  # 0xe033 ring 3 code, 64-bit
    0x1C07: 0x00CF_9B00_0000_FFFF,  # 0xe038 ring 0 code, compatibility
}
#: The trampoline's one instruction (``iretq``), which enters CPL3.
TRAMPOLINE_CODE = b"\x48\xcf"

# Control state of a PV vCPU as Xen runs it: what the guest reads back (xenpy.engine.pv64).
CPU_CR0 = GUEST_CR0
CPU_CR4 = GUEST_CR4_FIXED
CPU_EFER = GUEST_EFER


class HypervisorArea:
    """The pages of one domain's hypervisor area (L4 slot 260), in a buffer mapped after machine memory.

    Layout of the buffer (pages): 0 the L3 of slot 260, 1 its L2, 2.. the L1 tables (16 vCPUs each), then Xen's
    GDT page, a zero page, the trampoline page and the trampoline stack. vCPU ``i`` owns 32 pages of virtual
    space at ``PERDOMAIN_VIRT_START + i * 128 KiB``: pages 0-13 the guest GDT frames, 14 Xen's GDT page, 15 the
    zero page, 16 the trampoline, 17 the stack.

    Args:
        phys_base: physical address where engines map the buffer (above machine memory, 2 MiB aligned).
        max_vcpus: vCPU slots of the domain.
    """

    def __init__(self, phys_base: int, max_vcpus: int) -> None:
        self.phys_base = phys_base
        self.nr_l1 = (max_vcpus * VCPU_AREA_PAGES + 511) // 512
        if self.nr_l1 > 512:
            raise ValueError("too many vCPUs for one per-domain L2")
        first = 2 + self.nr_l1
        self.page_xen_gdt = first
        self.page_zero = first + 1
        self.page_trampoline = first + 2
        self.page_stack = first + 3
        self.nr_pages = first + 4
        self._raw = np.zeros((self.nr_pages + 1) * PAGE_SIZE, dtype=np.uint8)
        skip = (-self._raw.ctypes.data) % PAGE_SIZE
        self.buffer = self._raw[skip : skip + self.nr_pages * PAGE_SIZE]
        self.buffer_address: int = self.buffer.ctypes.data
        self.nr_bytes = self.nr_pages * PAGE_SIZE
        self._q = memoryview(self.buffer).cast("Q")
        q = self._q
        q[0] = self._pte(1)  # L3[0] -> L2
        for i in range(self.nr_l1):
            q[512 + i] = self._pte(2 + i)  # L2[i] -> L1 i
        for index, desc in XEN_GDT_ENTRIES.items():
            q[self.page_xen_gdt * 512 + index - FIRST_RESERVED_GDT_ENTRY] = desc
        tramp = self.page_trampoline * PAGE_SIZE
        self.buffer[tramp : tramp + len(TRAMPOLINE_CODE)] = np.frombuffer(TRAMPOLINE_CODE, np.uint8)
        for vcpu_id in range(max_vcpus):
            self._set(vcpu_id, PAGE_XEN_GDT, self._pte(self.page_xen_gdt))
            self._set(vcpu_id, PAGE_ZERO, self._pte(self.page_zero))
            self._set(vcpu_id, PAGE_TRAMPOLINE, self._pte(self.page_trampoline))
            self._set(vcpu_id, PAGE_STACK, self._pte(self.page_stack))

    def _pte(self, page: int) -> int:
        return (self.phys_base + page * PAGE_SIZE) | HV_PTE

    def _set(self, vcpu_id: int, page: int, entry: int) -> None:
        slot = vcpu_id * VCPU_AREA_PAGES + page
        self._q[(2 + slot // 512) * 512 + slot % 512] = entry

    @property
    def l4_entry(self) -> int:
        """The L4 entry of slot 260 (supervisor only)."""
        return self._pte(0)

    @staticmethod
    def vcpu_va(vcpu_id: int, page: int = 0) -> int:
        """Virtual address of page ``page`` of vCPU ``vcpu_id``'s slot."""
        return PERDOMAIN_VIRT_START + (vcpu_id * VCPU_AREA_PAGES + page) * PAGE_SIZE

    def map_gdt(self, vcpu_id: int, mfns: Sequence[int]) -> None:
        """Map the guest GDT frames ``mfns`` (at most 14) as pages 0.. of the vCPU's GDT; the rest unmapped."""
        for page in range(GDT_GUEST_PAGES):
            entry = (mfns[page] << PAGE_SHIFT) | HV_PTE if page < len(mfns) else 0
            self._set(vcpu_id, page, entry)

    def gdt_page_mapped(self, vcpu_id: int, page: int) -> bool:
        """Whether page ``page`` of the vCPU's 16-page GDT is mapped (a guest frame, Xen's page or the zero page)."""
        if not 0 <= page < GDT_LIMIT // PAGE_SIZE + 1:
            return False
        slot = vcpu_id * VCPU_AREA_PAGES + page
        return bool(self._q[(2 + slot // 512) * 512 + slot % 512] & PAGE_PRESENT)

    def stack_write(self, data: bytes) -> int:
        """Write ``data`` at the top of the trampoline stack; returns its offset from the stack page."""
        offset = PAGE_SIZE - len(data)
        base = self.page_stack * PAGE_SIZE + offset
        self.buffer[base : base + len(data)] = np.frombuffer(data, np.uint8)
        return offset


#: Bytes of the largest :class:`HypervisorArea` (512 L1 tables): what engines leave free after ``phys_base``.
MAX_AREA_BYTES = (2 + 512 + 4) * PAGE_SIZE
#: Xen's read-only machine-to-phys table (``RO_MPT_VIRT_START`` = ``MACH2PHYS_VIRT_START``): L4 slot 256.
RO_MPT_L4_SLOT = 256
#: Entries of the read-only M2P mapping: present, user, accessed, never writable (Xen's
#: ``__PAGE_HYPERVISOR_RO | _PAGE_USER``), so a guest kernel (at CPL3, as on Xen) reads it and a write faults;
#: the leaves are also no-execute.
M2P_PTE = PAGE_PRESENT | PAGE_USER | PAGE_ACCESSED


class ReadOnlyM2P:
    """The machine-wide read-only M2P mapping every PV64 guest sees at ``MACH2PHYS_VIRT_START`` (L4 slot 256).

    Its page tables (one L3, then L2 and L1 tables as the table needs) live in a buffer engines map at
    ``tables_phys``; the L1 entries point at the machine's M2P pages (``MachineMemory.m2p``, mapped at
    ``data_phys``), so the guest reads the hypervisor's M2P as it changes. Addresses past the table's last page
    are not mapped (a read there is a #PF, as on Xen past ``max_page``).

    Args:
        tables_phys: physical address where engines map :attr:`buffer` (4 KiB aligned).
        data_phys: physical address where engines map the machine's M2P pages.
        m2p_nr_bytes: size of those pages (a multiple of 4 KiB, at most 1 GiB).
    """

    def __init__(self, tables_phys: int, data_phys: int, m2p_nr_bytes: int) -> None:
        nr_data = m2p_nr_bytes // PAGE_SIZE
        nr_l1 = -(-nr_data // 512)
        if nr_l1 > 512:
            raise ValueError("machine too large for one M2P L2 table")
        self.tables_phys = tables_phys
        self.data_phys = data_phys
        self.nr_pages = 2 + nr_l1
        self._raw = np.zeros((self.nr_pages + 1) * PAGE_SIZE, dtype=np.uint8)
        skip = (-self._raw.ctypes.data) % PAGE_SIZE
        self.buffer = self._raw[skip : skip + self.nr_pages * PAGE_SIZE]
        self.buffer_address: int = self.buffer.ctypes.data
        self.nr_bytes = self.nr_pages * PAGE_SIZE
        q = memoryview(self.buffer).cast("Q")
        q[0] = (tables_phys + PAGE_SIZE) | M2P_PTE  # L3[0] -> L2
        for i in range(nr_l1):
            q[512 + i] = (tables_phys + (2 + i) * PAGE_SIZE) | M2P_PTE  # L2[i] -> L1 i
        for page in range(nr_data):
            q[1024 + page] = (data_phys + page * PAGE_SIZE) | M2P_PTE | PAGE_NX

    @property
    def l4_entry(self) -> int:
        """The L4 entry of slot 256 (user, read-only)."""
        return self.tables_phys | M2P_PTE
