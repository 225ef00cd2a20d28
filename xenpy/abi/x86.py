"""x86-64 architecture facts that Xen's PV interface rests on, each defined once.

Page-table entry bits (Xen's and Linux's ``_PAGE_*``), the paging geometry, the L4 slots Xen keeps for itself
(and the per-domain area among them) and the GDT entries Xen reserves. The domain model (page tables, memory
management), the CPU-bound hypercalls and the CPU engines all read these from here.
"""

# Page-table entry bits.
PAGE_PRESENT = 1 << 0
PAGE_RW = 1 << 1
PAGE_USER = 1 << 2
PAGE_PWT = 1 << 3
PAGE_PCD = 1 << 4
PAGE_ACCESSED = 1 << 5
PAGE_DIRTY = 1 << 6
#: Bit 7 of an L2/L3 entry: a superpage.
PAGE_PSE = 1 << 7
#: Bit 7 of an L1 entry: the PAT index bit.
PAGE_PAT = 1 << 7
PAGE_GLOBAL = 1 << 8
PAGE_NX = 1 << 63

#: Physical address width of a page-table entry's frame field (bits 12..51).
PADDR_BITS = 52
#: u64 image of Xen's ``PAGE_MASK``.
PAGE_MASK = 0xFFFF_FFFF_FFFF_F000
PADDR_MASK = (1 << PADDR_BITS) - 1
#: Frame bits of a page-table entry or cr3 (an mfn shifted left by 12, for a PV guest).
PTE_PFN_MASK = PADDR_MASK & PAGE_MASK
PTE_FLAGS_MASK = 0xFFFF_FFFF_FFFF_FFFF & ~PTE_PFN_MASK
#: Bits 52-62: available to software in the hardware's eyes, refused by Xen in a PV guest's entries.
PTE_HIGH_RESERVED = ((1 << 63) - 1) & ~PADDR_MASK

#: The L4 slots Xen reserves for itself in every PV64 L4 (``ROOT_PAGETABLE_FIRST_XEN_SLOT`` .. ``LAST``).
XEN_L4_SLOTS = range(256, 272)
#: Xen's per-domain area (``PERDOMAIN_VIRT_START``, L4 slot 260), where each vCPU's GDT is mapped.
PERDOMAIN_L4_SLOT = 260
PERDOMAIN_VIRT_START = 0xFFFF_8200_0000_0000

#: ``FIRST_RESERVED_GDT_ENTRY``: a guest GDT has at most this many entries (14 pages); Xen's own descriptors
#: follow.
FIRST_RESERVED_GDT_ENTRY = 0x1C00
#: Descriptors in one GDT page.
GDT_ENTRIES_PER_PAGE = 512
#: Bits of a segment descriptor's high word (Xen's ``_SEGMENT_TYPE``, ``_SEGMENT_S``, ``_SEGMENT_DPL``,
#: ``_SEGMENT_P``).
SEGMENT_TYPE = 0xF << 8
SEGMENT_S = 1 << 12
SEGMENT_DPL = 3 << 13
SEGMENT_P = 1 << 15
#: Interrupt vectors of the (virtual) IDT.
X86_NR_VECTORS = 256
