"""x86-64 architecture facts that Xen's PV interface rests on, each defined once.

Page-table entry bits (Xen's and Linux's ``_PAGE_*``), the paging geometry, the L4 slots Xen keeps for itself
(and the per-domain area among them) and the GDT entries Xen reserves. The domain model (page tables, memory
management), the CPU-bound hypercalls and the CPU engines all read these from here, with the RFLAGS, CR0/CR4,
exception-vector and MSR numbers the PV64 CPU semantics use.
"""

#: A 4 KiB page: ``PAGE_SHIFT`` bits of offset.
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: The offset bits of an address within its page.
PAGE_OFFSET_MASK = PAGE_SIZE - 1

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
#: Bits 52-62: available to software (Xen's ``_PAGE_AVAIL_HIGH``); a PV guest may set them, except bit 62 in an L1
#: entry, which Xen keeps for its grant mappings (``_PAGE_GNTTAB``).
PTE_AVAIL_HIGH = ((1 << 63) - 1) & ~PADDR_MASK
PAGE_GNTTAB = 1 << 62
#: Xen's ``_PAGE_GUEST_KERNEL``: bit 52 of a PV64 L1 entry, set on a kernel mapping (the guest kernel runs at
#: CPL3, so _PAGE_USER alone does not tell kernel from user mappings).
PAGE_GUEST_KERNEL = 1 << 52

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

#: Entries of an LDT (``MAX_LDT_ENTS``; ``ldt_ents`` of vcpu_guest_context is checked against it).
MAX_LDT_ENTS = 8192

# RFLAGS bits (``X86_EFLAGS_*``).
X86_EFLAGS_CF = 1 << 0
#: Bit 1, which always reads as 1.
X86_EFLAGS_MBS = 1 << 1
X86_EFLAGS_TF = 1 << 8
X86_EFLAGS_IF = 1 << 9
X86_EFLAGS_DF = 1 << 10
X86_EFLAGS_IOPL = 3 << 12
X86_EFLAGS_NT = 1 << 14
X86_EFLAGS_RF = 1 << 16
X86_EFLAGS_VM = 1 << 17
X86_EFLAGS_AC = 1 << 18
#: Every architecturally defined flag (CF PF AF ZF SF TF IF DF OF IOPL NT RF VM AC VIF VIP ID).
X86_EFLAGS_ALL = 0x3F_7FD5

#: CR0.TS (task switched: the next FPU instruction raises #NM).
X86_CR0_TS = 1 << 3
# CR4 bits.
X86_CR4_TSD = 1 << 2
X86_CR4_DE = 1 << 3
X86_CR4_PAE = 1 << 5
X86_CR4_PGE = 1 << 7
X86_CR4_OSFXSR = 1 << 9
X86_CR4_OSXMMEXCPT = 1 << 10
X86_CR4_FSGSBASE = 1 << 16

# Exception vectors (``X86_EXC_*``).
X86_EXC_DE = 0
X86_EXC_DB = 1
X86_EXC_NMI = 2
X86_EXC_BP = 3
X86_EXC_OF = 4
X86_EXC_UD = 6
X86_EXC_NM = 7
X86_EXC_DF = 8
X86_EXC_SS = 12
X86_EXC_GP = 13
X86_EXC_PF = 14
#: Vectors that push an error code (``X86_EXC_HAVE_EC``; spec 3.3): 8, 10-14, 17.
X86_EXC_HAVE_EC = (1 << 8) | (0x1F << 10) | (1 << 17)
#: #PF error-code bits (``PFEC_*``): the page was present, the access a write, from user mode, a reserved bit
#: was set, an instruction fetch.
PFEC_page_present = 1 << 0
PFEC_write_access = 1 << 1
PFEC_user_mode = 1 << 2
PFEC_reserved_bit = 1 << 3
PFEC_insn_fetch = 1 << 4
#: Mnemonics of the exception vectors, for messages.
EXCEPTION_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF", 9: "#CSO",
    10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 15: "#SPV", 16: "#MF", 17: "#AC", 18: "#MC",
    19: "#XM", 20: "#VE", 21: "#CP",
}  # fmt: skip

# MSRs.
MSR_TSC = 0x10
#: The microcode revision (Intel's IA32_BIOS_SIGN_ID, AMD's PATCHLEVEL).
MSR_IA32_UCODE_REV = 0x8B
#: Intel's PLATFORM_INFO (bit 31: CPUID faulting available) and MISC_FEATURES_ENABLES (bit 0: CPUID faulting on).
MSR_INTEL_PLATFORM_INFO = 0xCE
MSR_INTEL_MISC_FEATURES_ENABLES = 0x140
MSR_EFER = 0xC000_0080
MSR_FS_BASE = 0xC000_0100
MSR_GS_BASE = 0xC000_0101
MSR_SHADOW_GS_BASE = 0xC000_0102
MSR_TSC_AUX = 0xC000_0103

#: ``X86_DR6_DEFAULT`` / ``X86_DR7_DEFAULT``: the debug registers' reset values (the PV builder's, spec 7.5).
X86_DR6_DEFAULT = 0xFFFF0FF0
X86_DR7_DEFAULT = 0x00000400
#: DR6 bits forced to 0 (bit 12, ``X86_DR6_ZEROS``).
X86_DR6_ZEROS = 0x0000_1000
#: DR7 bits forced to 0: bits 12, 14, 15 (``X86_DR7_ZEROS``), and bit 11 (``X86_DR7_RTM``) for a CPU policy
#: without RTM, which is xenpy's.
X86_DR7_ZEROS = 0x0000_D000 | 0x0000_0800
#: DR7.GD (bit 13), general detect (``DR_GENERAL_DETECT``).
X86_DR7_GD = 0x0000_2000
#: DR7 local and global enables of the four breakpoints (``DR7_ACTIVE_MASK``).
X86_DR7_ACTIVE_MASK = 0xFF
#: DR7: the R/W and LEN fields of breakpoint n are the 4 bits at 16 + 4 * n; R/W = 10b is an I/O breakpoint.
X86_DR7_CONTROL_SHIFT = 16
X86_DR7_CONTROL_SIZE = 4
X86_DR7_RW_IO = 2

#: CPUID leaf 1 ECX bit 31: running under a hypervisor.
X86_FEATURE_HYPERVISOR = 1 << 31
