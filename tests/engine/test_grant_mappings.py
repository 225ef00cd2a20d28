"""GNTTABOP_map_grant_ref, unmap_grant_ref and unmap_and_replace on a version-1 grant table
(xenpy.core.grant_table; XTF's XSA-224 and XSA-234 tests run the same paths on real kernels)."""

from __future__ import annotations

import struct

import pytest

from xenpy.abi.generated.hypercalls import GnttabOp, Hypercall
from xenpy.abi.grant_table import (
    GNTMAP_device_map,
    GNTMAP_host_map,
    GNTMAP_readonly,
    GNTST_bad_dev_addr,
    GNTST_bad_domain,
    GNTST_bad_gntref,
    GNTST_bad_handle,
    GNTST_general_error,
    GNTST_okay,
    GTF_permit_access,
    GTF_reading,
    GTF_readonly,
    GTF_writing,
)
from xenpy.core.memory import PageType
from xenpy.hypervisor import DomainConfig, Hypervisor

P, RW, ACCESSED = 1, 2, 0x20
MAP = "<QIIHhIQ"
UNMAP = "<QQIh2x"


class Env:
    def __init__(self) -> None:
        self.hv = Hypervisor(memory_mib=16)
        self.dom = self.hv.create_domain(DomainConfig(memory_mib=2))
        self.dom.unpause()
        self.v = self.dom.vcpus[0]
        query = self.dom.alloc_guest(16, 8)
        self.dom.write_guest(query, struct.pack("<HxxIIhxx", 0x7FF0, 0, 0, 0))
        assert self.call(GnttabOp.GNTTABOP_query_size, query) == 0  # the table exists from here

    def call(self, cmd: int, uop: int, count: int = 1) -> int:
        return self.hv.hypercall(self.v, Hypercall.grant_table_op, cmd, uop, count)

    def grant(self, ref: int, frame: int, flags: int = GTF_permit_access, domid: int | None = None) -> None:
        maddr = (self.dom.grant_frames[0] << 12) + ref * 8
        self.hv.machine.write(maddr, struct.pack("<HHI", flags, self.dom.domid if domid is None else domid, frame))

    def entry_flags(self, ref: int) -> int:
        return self.hv.machine.read_u16((self.dom.grant_frames[0] << 12) + ref * 8)

    def map(self, ref: int, flags: int, host_addr: int, dom: int | None = None) -> tuple[int, int, int]:
        op = self.dom.alloc_guest(32, 8)
        self.dom.write_guest(op, struct.pack(MAP, host_addr, flags, ref, self.dom.domid if dom is None else dom,
                                             0x55, 0, 0))
        assert self.call(GnttabOp.GNTTABOP_map_grant_ref, op) == 0
        _, _, _, _, status, handle, bus = struct.unpack(MAP, self.dom.read_guest(op, 32))
        return status, handle, bus

    def unmap(self, handle: int, host_addr: int, second: int = 0, *, replace: bool = False) -> int:
        op = self.dom.alloc_guest(24, 8)
        self.dom.write_guest(op, struct.pack(UNMAP, host_addr, second, handle, 0x55))
        cmd = GnttabOp.GNTTABOP_unmap_and_replace if replace else GnttabOp.GNTTABOP_unmap_grant_ref
        assert self.call(cmd, op) == 0
        return struct.unpack(UNMAP, self.dom.read_guest(op, 24))[3]

    def pte(self, gva: int) -> int:
        return self.hv.machine.read_u64(self.dom.pagetables.entry_maddr(gva, 1))

    def remap_ro(self, gva: int) -> None:
        mfn = self.dom.gva_to_mfn(gva)
        assert self.hv.hypercall(self.v, Hypercall.update_va_mapping, gva, (mfn << 12) | P | ACCESSED, 0) == 0


@pytest.fixture
def env() -> Env:
    return Env()


def test_host_and_device_map_then_unmap(env: Env):
    """A writable host+device mapping: the L1 entry of host_addr maps the frame RW, the frame holds two writable
    type references, the shared entry shows GTF_reading|GTF_writing, dev_bus_addr is the frame's address.
    Unmapping host then device releases both references, the handle and the entry's flags."""
    page = env.dom.alloc_guest_page()
    frame = env.dom.gva_to_mfn(page)
    env.remap_ro(page)
    host = env.dom.alloc_guest_page()
    old_target = env.dom.gva_to_mfn(host)
    env.grant(8, frame)
    status, handle, bus = env.map(8, GNTMAP_host_map | GNTMAP_device_map, host)
    assert (status, bus) == (GNTST_okay, frame << 12)
    assert env.pte(host) >> 12 & 0xFFFFFFFFFF == frame and env.pte(host) & RW
    machine = env.hv.machine
    assert (machine.page_type(frame), machine.type_count(frame)) == (PageType.writable, 2)
    assert machine.type_count(old_target) == 0  # the replaced RW mapping gave its reference up
    assert env.entry_flags(8) == GTF_permit_access | GTF_reading | GTF_writing
    assert env.unmap(handle, host) == GNTST_okay
    assert env.pte(host) == 0 and machine.type_count(frame) == 1
    assert env.unmap(handle, 0, (frame + 1) << 12) == GNTST_bad_dev_addr  # not the granted frame
    assert env.unmap(handle, 0, frame << 12) == GNTST_okay
    assert machine.type_count(frame) == 0
    assert env.entry_flags(8) == GTF_permit_access
    assert env.unmap(handle, 0, frame << 12) == GNTST_bad_handle


def test_map_refusals(env: Env):
    """Neither host nor device map: bad_gntref; unknown domain (and DOMID_SELF): bad_domain; a ref past the
    table: bad_gntref; an entry not permitting this domain, or read-only for a writable map: general_error;
    no L1 entry for host_addr: general_error. Nothing changes on a refusal."""
    page = env.dom.alloc_guest_page()
    frame = env.dom.gva_to_mfn(page)
    env.remap_ro(page)
    host = env.dom.alloc_guest_page()
    before = env.pte(host)
    env.grant(8, frame)
    assert env.map(8, GNTMAP_readonly, host)[0] == GNTST_bad_gntref
    assert env.map(8, GNTMAP_host_map, host, dom=999)[0] == GNTST_bad_domain
    assert env.map(8, GNTMAP_host_map, host, dom=0x7FF0)[0] == GNTST_bad_domain
    assert env.map(512, GNTMAP_host_map, host)[0] == GNTST_bad_gntref
    env.grant(9, frame, domid=999)
    assert env.map(9, GNTMAP_host_map, host)[0] == GNTST_general_error
    env.grant(10, frame, GTF_permit_access | GTF_readonly)
    assert env.map(10, GNTMAP_host_map, host)[0] == GNTST_general_error
    assert env.map(8, GNTMAP_host_map, 0x7000_0000_0000)[0] == GNTST_general_error
    assert env.pte(host) == before and env.hv.machine.type_count(frame) == 0
    assert env.entry_flags(8) == GTF_permit_access and not env.dom.grant_active
    status, _, _ = env.map(10, GNTMAP_host_map | GNTMAP_readonly, host)
    assert status == GNTST_okay and not env.pte(host) & RW
    assert env.entry_flags(10) == GTF_permit_access | GTF_readonly | GTF_reading


def test_unmap_checks_the_pte_flags(env: Env):
    """XSA-234: the entry at host_addr must map the frame with the mapping's RW flag; a read-only entry of the
    frame does not unmap a writable grant mapping (the mapping stays, with its pin)."""
    page = env.dom.alloc_guest_page()
    frame = env.dom.gva_to_mfn(page)
    env.remap_ro(page)
    host = env.dom.alloc_guest_page()
    env.grant(8, frame)
    status, handle, _ = env.map(8, GNTMAP_host_map, host)
    assert status == GNTST_okay
    assert env.hv.hypercall(env.v, Hypercall.update_va_mapping, host, (frame << 12) | P | ACCESSED, 0) == 0
    assert env.unmap(handle, host) == GNTST_general_error
    assert env.dom.maptrack[handle] is not None and env.dom.grant_active[8].host_write == 1


def test_unmap_and_replace_moves_the_new_addr_entry(env: Env):
    """GNTTABOP_unmap_and_replace: the L1 entry of new_addr moves to host_addr, new_addr is left unmapped."""
    page = env.dom.alloc_guest_page()
    frame = env.dom.gva_to_mfn(page)
    env.remap_ro(page)
    host, spare = env.dom.alloc_guest_page(), env.dom.alloc_guest_page()
    spare_pte = env.pte(spare)
    env.grant(8, frame)
    status, handle, _ = env.map(8, GNTMAP_host_map | GNTMAP_readonly, host)
    assert status == GNTST_okay
    assert env.unmap(handle, host, spare, replace=True) == GNTST_okay
    assert (env.pte(host), env.pte(spare)) == (spare_pte, 0)
    assert not env.dom.grant_active and env.entry_flags(8) == GTF_permit_access
