"""Machine memory, frame ownership and typing, the M2P and per-domain P2M tables.

Models the parts of Xen's memory management that a PV guest can observe: the frame table
(``struct page_info``: owner, and ``type_info`` with its type and use count; ``asm/mm.h``), the
machine-to-phys table (``machine_to_phys_mapping``, ``get_gpfn_from_mfn``) and a PV domain's phys-to-machine
list (the guest's ``mfn_list``, spec 7.2).

Invariants:

* Machine memory is ONE C-contiguous ``numpy.uint8`` buffer of shape ``(nr_frames, PAGE_SIZE)`` whose frame 0
  starts on a 4096-byte host address. It is allocated once and never reallocated, so a CPU engine may map
  ``buffer_address`` directly (e.g. Unicorn ``mem_map_ptr``).
* PV guests are not translated: they see machine frame numbers (mfn). Each domain also has pseudo-physical
  frame numbers (pfn) ``0..nr_pages-1``. The p2m is deliberately never the identity (no ``pfn == mfn``) and
  the mfns of a domain are handed out in a scrambled, non-monotonic but deterministic (seeded) order, so code
  that confuses pfn and mfn fails loudly.
* mfn 0 is never handed out: a zeroed cr3 or page-table entry never reaches guest data.
* ``m2p[mfn]`` is the owning domain's pfn for ``mfn``, or ``INVALID_M2P_ENTRY``; for every domain's ``P2M``,
  ``m2p[p2m[pfn]] == pfn``.
* Frames are zeroed when they are returned to the free pool, so a newly allocated frame reads as zeros.
* Host memory follows what is touched, not the machine's size: machine memory and the per-frame tables are
  anonymous mappings without huge pages (a never-written frame costs nothing; freed frames are given back to the
  host, ``MADV_DONTNEED``), and the scrambled allocation order is computed as frames are handed out. What is
  written for every frame is the m2p (8 bytes, ``INVALID_M2P_ENTRY`` until owned) and the owner (4 bytes).

The machine-physical accessors (``read``, ``write``, ``read_u64``, ...) are for the hypervisor's own
trusted use and raise ``ValueError`` on an out-of-range machine address. Guest pointers never go through them
directly: they go through the copy helpers in ``xenpy.core.pagetable``.
"""

from __future__ import annotations

import mmap
import random
from enum import IntEnum

import numpy as np

from xenpy.abi.x86 import PAGE_SHIFT, PAGE_SIZE

#: The int64 image of Xen's ``INVALID_MFN`` (``~0UL``), as stored in p2m arrays.
INVALID_MFN = -1
#: The int64 image of Xen's ``INVALID_M2P_ENTRY`` (``~0UL``), as stored in the m2p array.
INVALID_M2P_ENTRY = -1

#: Bytes-like objects accepted by the write accessors (anything exporting a C-contiguous buffer works).
BytesLike = bytes | bytearray | memoryview

_NO_OWNER = -1
_DOMID_LIMIT = 1 << 16  # domid_t is uint16_t
#: Frames per block of the allocation order (2 MiB): blocks come in a seeded order, frames scrambled inside one.
_BLOCK = 512


def _anonymous(nbytes: int) -> mmap.mmap:
    """Zeroed, page-aligned host memory backed only where it is touched. Without huge pages, so that a touched
    byte costs a 4 KiB page, not 2 MiB (numpy's own large allocations ask the kernel for transparent huge pages)."""
    raw = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        raw.madvise(mmap.MADV_NOHUGEPAGE)
    return raw


def _zeros(count: int, dtype: type) -> np.ndarray:
    """A zeroed array of ``count`` elements over :func:`_anonymous` memory (which the array keeps alive)."""
    item = np.dtype(dtype).itemsize
    return np.frombuffer(_anonymous(count * item), dtype=dtype, count=count)


class _AllocationOrder:
    """The deterministic, scrambled order in which never-allocated frames are handed out, computed as they are.

    Position ``x`` of the order is frame ``blocks[x // 512] * 512 + local[x % 512]``: the machine's 2 MiB blocks
    in a seeded shuffle, and inside each block its 512 frames in a seeded shuffle, so consecutive allocations are
    neither ascending nor contiguous, while a large domain still owns whole blocks (which its release gives back
    to the host in runs). Positions naming mfn 0 or a frame past the machine are skipped.
    """

    def __init__(self, nr_frames: int, seed: int) -> None:
        self.nr_frames = nr_frames
        rng = random.Random(seed)
        blocks = list(range(-(-nr_frames // _BLOCK)))
        rng.shuffle(blocks)
        local = list(range(_BLOCK))
        rng.shuffle(local)
        self._blocks = np.array(blocks, dtype=np.int64) * _BLOCK
        self._local = np.array(local, dtype=np.int64)
        self._next = 0  # the next position
        self.remaining = nr_frames - 1  # frames not yet handed out (mfn 0 never is)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` frames of the order (``count <= remaining``), as ``numpy.int64``."""
        assert 0 <= count <= self.remaining
        if count == 0:
            return np.empty(0, dtype=np.int64)
        # Fewer than 512 positions are skipped in all, so count + 512 positions hold count frames.
        first_block, skip = divmod(self._next, _BLOCK)
        end_block = min(len(self._blocks), (self._next + count + _BLOCK) // _BLOCK + 1)
        candidates = (self._blocks[first_block:end_block, None] + self._local[None, :]).ravel()[skip:]
        skipped = np.flatnonzero((candidates <= 0) | (candidates >= self.nr_frames)).tolist()
        nr_skipped = 0  # the skipped positions among the first count + nr_skipped
        while nr_skipped < len(skipped) and skipped[nr_skipped] < count + nr_skipped:
            nr_skipped += 1
        taken = candidates[: count + nr_skipped]
        if nr_skipped:
            taken = np.delete(taken, skipped[:nr_skipped])
        self._next += count + nr_skipped
        self.remaining -= count
        return taken.copy()


class PageType(IntEnum):
    """Frame use type (Xen's ``PGT_*`` values from ``page_info.type_info``, before shifting).

    A frame holds at most one type at a time. A type is taken with ``MachineMemory.get_page_type`` and
    released with ``put_page_type``; it can only change while its use count is zero. This is what makes a
    page-table frame impossible to map writable (spec 7.2) or to register as a vcpu_info page (spec 4.1).
    """

    none = 0
    l1 = 1
    l2 = 2
    l3 = 3
    l4 = 4
    seg_desc = 5
    writable = 7

    @property
    def is_page_table(self) -> bool:
        """True for the four page-table types."""
        return PageType.l1 <= self <= PageType.l4


class OutOfMachineMemory(MemoryError):  # noqa: N818 (named for what ran out, like MemoryError)
    """Not enough free machine frames for an allocation."""

    def __init__(self, nr_pages: int, nr_free_frames: int) -> None:
        super().__init__(f"out of machine memory: {nr_pages} frames wanted, {nr_free_frames} free")
        self.nr_pages = nr_pages
        self.nr_free_frames = nr_free_frames


class MachineMemory:
    """The host's machine frames, their owners and types, and the M2P table.

    Args:
        nr_frames: number of 4 KiB machine frames (frame 0 is reserved and never allocated).
        seed: seed of the deterministic scrambled allocation order.

    Attributes:
        frames: the whole machine memory, ``numpy.uint8`` of shape ``(nr_frames, PAGE_SIZE)``, C-contiguous,
            page-aligned, never reallocated. Row ``mfn`` is machine frame ``mfn``.
        nr_frames: number of machine frames.
        nr_bytes: ``nr_frames * PAGE_SIZE``.
        buffer_address: host address of frame 0 (4096-aligned), for mapping into a CPU engine.
        m2p: ``numpy.int64`` array, ``mfn -> pfn`` or ``INVALID_M2P_ENTRY``; a view of whole, page-aligned
            pages at host address ``m2p_buffer_address`` (``m2p_nr_bytes`` long), never reallocated.
        mv_u8: memoryview (format ``B``) over the whole buffer, indexed by maddr. Fast path for the guest
            access helpers; bounds are the caller's business.
        mv_u64: memoryview (format ``Q``) over the whole buffer, indexed by ``maddr >> 3`` (page-table
            entries). Same contract as ``mv_u8``.
        mv_owner: memoryview (format ``i``) over the owner array, indexed by mfn; ``-1`` means no owner.
            Read-only by convention.
    """

    def __init__(self, nr_frames: int, *, seed: int = 0) -> None:
        if nr_frames < 2:
            raise ValueError(f"nr_frames must be at least 2 (frame 0 is reserved), got {nr_frames}")
        self.nr_frames = nr_frames
        self.nr_bytes = nr_frames * PAGE_SIZE
        # The mapping stays referenced (by the arrays over it too) so the buffer lives as long as this object.
        self._raw = _anonymous(self.nr_bytes)
        flat = np.frombuffer(self._raw, dtype=np.uint8)
        self.frames: np.ndarray = flat.reshape(nr_frames, PAGE_SIZE)
        self.buffer_address: int = self.frames.ctypes.data
        assert self.buffer_address % PAGE_SIZE == 0 and self.frames.flags.c_contiguous
        self.mv_u8 = memoryview(flat)
        self.mv_u64 = self.mv_u8.cast("Q")

        # The M2P in whole pages (the tail of the last page reads as INVALID_M2P_ENTRY), page-aligned, so an
        # engine can map it read-only into guests as Xen's RO_MPT (spec 7.2).
        self.m2p_nr_bytes = -(-nr_frames * 8 // PAGE_SIZE) * PAGE_SIZE
        m2p_pages = _zeros(self.m2p_nr_bytes // 8, np.int64)
        m2p_pages.fill(INVALID_M2P_ENTRY)
        self.m2p_buffer_address: int = m2p_pages.ctypes.data
        assert self.m2p_buffer_address % PAGE_SIZE == 0
        self.m2p: np.ndarray = m2p_pages[:nr_frames]
        self._owner = _zeros(nr_frames, np.int32)
        self._owner.fill(_NO_OWNER)
        self.mv_owner = memoryview(self._owner)
        self._type = _zeros(nr_frames, np.uint8)
        self._type_count = _zeros(nr_frames, np.int64)
        #: Xen's ``linear_pt_count`` per frame (linear page-table entries held, or negative: uses as a target).
        self.linear_pt_count = _zeros(nr_frames, np.int32)

        # The free pool: the frames never handed out, in their scrambled order, then the freed ones in the order
        # they were freed.
        self._fresh = _AllocationOrder(nr_frames, seed)
        self._freed: list[np.ndarray] = []
        self._nr_freed = 0
        self._allocated: dict[int, list[np.ndarray]] = {}

    # ---------------------------------------------------------------- frames and ownership

    def mfn_valid(self, mfn: int) -> bool:
        """True if ``mfn`` names a machine frame (Xen's ``mfn_valid``)."""
        return 0 <= mfn < self.nr_frames

    def _check_mfn(self, mfn: int) -> int:
        mfn = int(mfn)
        if not 0 <= mfn < self.nr_frames:
            raise ValueError(f"mfn {mfn:#x} outside machine memory ({self.nr_frames} frames)")
        return mfn

    def owner_of(self, mfn: int) -> int | None:
        """The domid owning ``mfn``, or ``None`` for a free or reserved frame.

        Raises:
            ValueError: ``mfn`` is outside machine memory.
        """
        owner = int(self._owner[self._check_mfn(mfn)])
        return None if owner == _NO_OWNER else owner

    @property
    def nr_free_frames(self) -> int:
        """Number of frames in the free pool."""
        return self._fresh.remaining + self._nr_freed

    def alloc_domain_frames(self, domid: int, nr_pages: int) -> np.ndarray:
        """Give ``nr_pages`` free frames to ``domid``.

        Frames come from the free pool in a deterministic, scrambled order (never ascending mfns). They read
        as zeros, have type ``PageType.none`` and no m2p entry (a ``P2M`` sets that).

        Args:
            domid: owning domain (0..65535).
            nr_pages: number of frames wanted (0 gives an empty array).

        Returns:
            ``numpy.int64`` array of the new frames' mfns, in allocation order.

        Raises:
            OutOfMachineMemory: fewer than ``nr_pages`` frames are free; nothing is allocated.
            ValueError: bad ``domid`` or negative ``nr_pages``.
        """
        if not 0 <= domid < _DOMID_LIMIT:
            raise ValueError(f"domid {domid} out of range")
        if nr_pages < 0:
            raise ValueError(f"nr_pages must be >= 0, got {nr_pages}")
        if nr_pages > self.nr_free_frames:
            raise OutOfMachineMemory(nr_pages, self.nr_free_frames)
        mfns = self._take_free(nr_pages)
        self._owner[mfns] = domid
        self._allocated.setdefault(domid, []).append(mfns)
        return mfns.copy()

    def _take_free(self, nr_pages: int) -> np.ndarray:
        fresh = min(nr_pages, self._fresh.remaining)
        parts = [self._fresh.take(fresh)]
        wanted = nr_pages - fresh
        while wanted:
            chunk = self._freed[0]
            parts.append(chunk[:wanted])
            if len(chunk) > wanted:
                self._freed[0] = chunk[wanted:]
            else:
                self._freed.pop(0)
            wanted -= len(parts[-1])
        self._nr_freed -= nr_pages - fresh
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def domain_frames(self, domid: int) -> np.ndarray:
        """All mfns owned by ``domid``, in allocation order (``numpy.int64``)."""
        chunks = self._allocated.get(domid)
        if not chunks:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(chunks)

    def free_domain_frames(self, domid: int) -> int:
        """Return every frame owned by ``domid`` to the free pool.

        The frames are zeroed, lose their owner, type and m2p entry, and are appended to the free pool in
        allocation order. Any ``P2M`` of the domain is stale afterwards (its ``owns`` answers ``False``).

        Returns:
            Number of frames freed (0 if the domain owned none).
        """
        mfns = self.domain_frames(domid)
        self._allocated.pop(domid, None)
        self._release(mfns)
        return len(mfns)

    def free_frames(self, domid: int, mfns: list[int] | np.ndarray) -> None:
        """Return the frames ``mfns`` of ``domid`` to the free pool (Xen's ``free_xenheap_page`` of a page shared
        with the domain): zeroed, without owner, type or m2p entry, appended to the pool in the order given.

        Raises:
            ValueError: a frame is not owned by ``domid``; nothing is freed.
        """
        mfns = np.asarray(mfns, dtype=np.int64)
        if len(mfns) == 0:
            return
        if np.any((mfns <= 0) | (mfns >= self.nr_frames)) or np.any(self._owner[mfns] != domid):
            raise ValueError(f"not all of {mfns.tolist()} are frames of domain {domid}")
        chunks = [chunk[~np.isin(chunk, mfns)] for chunk in self._allocated.get(domid, [])]
        self._allocated[domid] = [chunk for chunk in chunks if len(chunk)]
        self._release(mfns)

    def _release(self, mfns: np.ndarray) -> None:
        if len(mfns) == 0:
            return
        self._scrub(mfns)
        self._owner[mfns] = _NO_OWNER
        self.m2p[mfns] = INVALID_M2P_ENTRY
        for table in (self._type, self._type_count, self.linear_pt_count):
            table[mfns[table[mfns] != 0]] = 0  # only where set: the untouched pages of the tables stay unbacked
        self._freed.append(np.array(mfns, dtype=np.int64))
        self._nr_freed += len(mfns)

    def _scrub(self, mfns: np.ndarray) -> None:
        """Zero the frames ``mfns``: a few are written, runs of many are given back to the host (``MADV_DONTNEED``
        reads as zeros again), so that freeing a large domain neither touches nor keeps its untouched frames."""
        if len(mfns) < 64:
            self.frames[mfns] = 0
            return
        marked = np.zeros(self.nr_frames + 2, dtype=np.int8)
        marked[mfns + 1] = 1
        edges = np.flatnonzero(np.diff(marked))
        for first, end in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
            self._raw.madvise(mmap.MADV_DONTNEED, first * PAGE_SIZE, (end - first) * PAGE_SIZE)

    # ---------------------------------------------------------------- page types

    def page_type(self, mfn: int) -> PageType:
        """Current type of ``mfn`` (``PageType.none`` when its type count is zero)."""
        return PageType(int(self._type[self._check_mfn(mfn)]))

    @property
    def type_counts(self) -> np.ndarray:
        """The type count of every frame (a read-only view; Xen's ``type_info & PGT_count_mask``)."""
        view = self._type_count.view()
        view.flags.writeable = False
        return view

    def type_count(self, mfn: int) -> int:
        """Number of outstanding type references on ``mfn``."""
        return int(self._type_count[self._check_mfn(mfn)])

    def page_types(self, mfns: np.ndarray) -> np.ndarray:
        """The current type of each of ``mfns`` (``PageType`` values; 0 where the type count is zero)."""
        return np.where(self._type_count[mfns] > 0, self._type[mfns], 0).astype(np.int64)

    def typed_frames(self, page_type: PageType) -> np.ndarray:
        """The frames holding ``page_type`` with a non-zero type count (``numpy.int64``, ascending)."""
        return np.flatnonzero((self._type == page_type) & (self._type_count > 0)).astype(np.int64)

    def get_page_type(self, mfn: int, page_type: PageType) -> bool:
        """Take a type reference (Xen's ``get_page_type``).

        Succeeds if the frame is untyped (count 0), taking the new type, or already has ``page_type``.

        Returns:
            True and the count is incremented; False (nothing changed) if the frame holds another type.

        Raises:
            ValueError: ``mfn`` outside machine memory, or ``page_type`` is ``PageType.none``.
        """
        mfn = self._check_mfn(mfn)
        if page_type == PageType.none:
            raise ValueError("cannot take a reference on PageType.none")
        count = int(self._type_count[mfn])
        if count == 0:
            self._type[mfn] = page_type
        elif self._type[mfn] != page_type:
            return False
        self._type_count[mfn] = count + 1
        return True

    def get_page_types(self, mfns: np.ndarray, page_type: PageType) -> bool:
        """``get_page_type`` on each of ``mfns`` (in range; a repeated mfn takes one reference per occurrence), all
        or none: False, and nothing changed, if one of them holds another type."""
        if page_type == PageType.none:
            raise ValueError("cannot take a reference on PageType.none")
        mfns = np.asarray(mfns, dtype=np.int64)
        if np.any((self._type_count[mfns] > 0) & (self._type[mfns] != page_type)):
            return False
        self._type[mfns] = page_type
        np.add.at(self._type_count, mfns, 1)
        return True

    def put_page_type(self, mfn: int) -> None:
        """Drop a type reference (Xen's ``put_page_type``); the type reverts to none at count zero.

        Raises:
            ValueError: ``mfn`` outside machine memory or holds no type reference.
        """
        mfn = self._check_mfn(mfn)
        count = int(self._type_count[mfn])
        if count == 0:
            raise ValueError(f"mfn {mfn:#x} holds no type reference")
        self._type_count[mfn] = count - 1
        if count == 1:
            self._type[mfn] = PageType.none

    # ---------------------------------------------------------------- machine-physical access (trusted)

    def _check_range(self, maddr: int, nbytes: int) -> None:
        if nbytes < 0 or maddr < 0 or maddr + nbytes > self.nr_bytes:
            raise ValueError(
                f"machine range [{maddr:#x}, +{nbytes:#x}) outside machine memory ({self.nr_bytes:#x} bytes)"
            )

    def frame(self, mfn: int) -> np.ndarray:
        """Writable ``numpy.uint8`` view of one machine frame (4096 bytes)."""
        return self.frames[self._check_mfn(mfn)]

    def zero_frame(self, mfn: int) -> None:
        """Fill machine frame ``mfn`` with zeros."""
        self.frames[self._check_mfn(mfn)] = 0

    def read(self, maddr: int, nbytes: int) -> bytes:
        """Read ``nbytes`` at machine address ``maddr`` (may span frames); ``ValueError`` if out of range."""
        self._check_range(maddr, nbytes)
        return self.mv_u8[maddr : maddr + nbytes].tobytes()

    def write(self, maddr: int, data: BytesLike) -> None:
        """Write ``data`` at machine address ``maddr`` (may span frames); ``ValueError`` if out of range."""
        src = memoryview(data).cast("B")
        self._check_range(maddr, len(src))
        self.mv_u8[maddr : maddr + len(src)] = src

    def _read_uint(self, maddr: int, nbytes: int) -> int:
        self._check_range(maddr, nbytes)
        return int.from_bytes(self.mv_u8[maddr : maddr + nbytes], "little")

    def _write_uint(self, maddr: int, value: int, nbytes: int) -> None:
        self._check_range(maddr, nbytes)
        if not 0 <= value < 1 << (8 * nbytes):
            raise ValueError(f"value {value:#x} does not fit in {nbytes} bytes")
        self.mv_u8[maddr : maddr + nbytes] = value.to_bytes(nbytes, "little")

    def read_u8(self, maddr: int) -> int:
        """Read an unsigned byte at ``maddr``."""
        return self._read_uint(maddr, 1)

    def read_u16(self, maddr: int) -> int:
        """Read a little-endian uint16 at ``maddr``."""
        return self._read_uint(maddr, 2)

    def read_u32(self, maddr: int) -> int:
        """Read a little-endian uint32 at ``maddr``."""
        return self._read_uint(maddr, 4)

    def read_u64(self, maddr: int) -> int:
        """Read a little-endian uint64 at ``maddr``."""
        return self._read_uint(maddr, 8)

    def write_u8(self, maddr: int, value: int) -> None:
        """Write an unsigned byte at ``maddr``; ``ValueError`` if it does not fit."""
        self._write_uint(maddr, value, 1)

    def write_u16(self, maddr: int, value: int) -> None:
        """Write a little-endian uint16 at ``maddr``; ``ValueError`` if it does not fit."""
        self._write_uint(maddr, value, 2)

    def write_u32(self, maddr: int, value: int) -> None:
        """Write a little-endian uint32 at ``maddr``; ``ValueError`` if it does not fit."""
        self._write_uint(maddr, value, 4)

    def write_u64(self, maddr: int, value: int) -> None:
        """Write a little-endian uint64 at ``maddr``; ``ValueError`` if it does not fit."""
        self._write_uint(maddr, value, 8)


def _is_monotonic(mfns: np.ndarray) -> bool:
    steps = np.diff(mfns)
    return bool(np.all(steps > 0) or np.all(steps < 0))


def _scramble_p2m(mfns: np.ndarray) -> np.ndarray:
    """Reorder ``mfns`` in place: no ``mfns[pfn] == pfn`` and, for 3+ entries, a non-monotonic order.

    The free pool is already a random permutation, so this rarely changes anything; it turns the likely
    property into a guarantee. Deterministic: only swaps and rotations, no randomness.
    """
    nr_pages = len(mfns)
    if nr_pages < 2:
        # A single pfn 0 can never equal its mfn: mfn 0 is reserved.
        return mfns
    for _ in range(4):
        for pfn in np.flatnonzero(mfns == np.arange(nr_pages)):
            if mfns[pfn] == pfn:
                # Swapping with any other slot removes this fixed point and cannot create one.
                other = (pfn + 1) % nr_pages
                mfns[pfn], mfns[other] = mfns[other], mfns[pfn]
        if nr_pages < 3 or not _is_monotonic(mfns):
            return mfns
        mfns[:] = np.roll(mfns, 1)
    raise AssertionError("could not scramble the p2m")  # unreachable for distinct mfns


class P2M:
    """A PV domain's phys-to-machine table, consistent with the machine's m2p.

    Args:
        machine: the machine memory.
        domid: the owning domain; every mfn must be owned by it.
        mfns: ``mfns[pfn]`` is the frame backing ``pfn``; distinct, with no m2p entry yet.

    Raises:
        ValueError: an mfn is out of range, not owned by ``domid``, repeated, or already in an m2p.
    """

    def __init__(self, machine: MachineMemory, domid: int, mfns: np.ndarray) -> None:
        mfns = np.asarray(mfns, dtype=np.int64).copy()
        if mfns.ndim != 1:
            raise ValueError("mfns must be one-dimensional")
        if len(mfns):
            if mfns.min() < 0 or mfns.max() >= machine.nr_frames:
                raise ValueError("mfn outside machine memory")
            if np.any(machine._owner[mfns] != domid):
                raise ValueError(f"p2m names a frame not owned by domain {domid}")
            if np.any(machine.m2p[mfns] != INVALID_M2P_ENTRY):
                raise ValueError("p2m names a frame that already has an m2p entry")
        pfns = np.arange(len(mfns), dtype=np.int64)
        machine.m2p[mfns] = pfns
        # A repeated mfn keeps only its last pfn (no sort needed to find it); nothing is left behind.
        if not np.array_equal(machine.m2p[mfns], pfns):
            machine.m2p[mfns] = INVALID_M2P_ENTRY
            raise ValueError("repeated mfn in p2m")
        self._attach(machine, domid, mfns)

    @classmethod
    def _of_new_frames(cls, machine: MachineMemory, domid: int, mfns: np.ndarray) -> P2M:
        """The P2M over frames just given to ``domid`` (distinct, owned by it, no m2p entry): nothing to check."""
        p2m = cls.__new__(cls)
        mfns = np.asarray(mfns, dtype=np.int64)
        machine.m2p[mfns] = np.arange(len(mfns), dtype=np.int64)
        p2m._attach(machine, domid, mfns)
        return p2m

    def _attach(self, machine: MachineMemory, domid: int, mfns: np.ndarray) -> None:
        self.machine = machine
        self.domid = domid
        self._mfns = mfns
        self._mfns.flags.writeable = False
        self._mv_mfns = memoryview(self._mfns)

    @property
    def nr_pages(self) -> int:
        """Number of pfns (``0..nr_pages-1``)."""
        return len(self._mfns)

    @property
    def mfns(self) -> np.ndarray:
        """Read-only ``numpy.int64`` array, ``mfns[pfn] == mfn``."""
        return self._mfns

    def mfn_of(self, pfn: int) -> int:
        """The mfn backing ``pfn``. Raises ``ValueError`` if ``pfn`` is not in ``0..nr_pages-1``."""
        if not 0 <= pfn < len(self._mfns):
            raise ValueError(f"pfn {pfn:#x} outside domain {self.domid} ({len(self._mfns)} pages)")
        return self._mv_mfns[pfn]

    def owns(self, mfn: int) -> bool:
        """True if ``mfn`` is owned by this domain and backs one of its pfns."""
        machine = self.machine
        if not 0 <= mfn < machine.nr_frames or machine.mv_owner[mfn] != self.domid:
            return False
        pfn = int(machine.m2p[mfn])
        return 0 <= pfn < len(self._mfns) and self._mv_mfns[pfn] == mfn

    def pfn_of(self, mfn: int) -> int:
        """The pfn of ``mfn`` via the m2p. Raises ``ValueError`` unless ``owns(mfn)``."""
        if not self.owns(mfn):
            raise ValueError(f"mfn {mfn:#x} is not a frame of domain {self.domid}'s p2m")
        return int(self.machine.m2p[mfn])

    def guest_mfn_list(self) -> bytes:
        """The p2m as the guest's ``mfn_list`` (spec 7.2): ``nr_pages`` little-endian uint64 entries."""
        return self._mfns.astype("<u8").tobytes()


class DomainMemory:
    """One domain's memory: its frames and its P2M, plus frame accessors for builders and handlers.

    Allocates ``nr_pages`` frames from ``machine`` for ``domid`` and builds a non-identity P2M over them.

    Args:
        machine: the machine memory.
        domid: the domain.
        nr_pages: number of pseudo-physical pages.

    Raises:
        OutOfMachineMemory: not enough free frames (nothing is allocated).
    """

    def __init__(self, machine: MachineMemory, domid: int, nr_pages: int) -> None:
        mfns = machine.alloc_domain_frames(domid, nr_pages)
        self.machine = machine
        self.domid = domid
        self.p2m = P2M._of_new_frames(machine, domid, _scramble_p2m(mfns))

    @property
    def nr_pages(self) -> int:
        """Number of pseudo-physical pages."""
        return self.p2m.nr_pages

    def mfn_of(self, pfn: int) -> int:
        """The mfn backing ``pfn`` (``ValueError`` if out of range)."""
        return self.p2m.mfn_of(pfn)

    def pfn_of(self, mfn: int) -> int:
        """The pfn of ``mfn`` (``ValueError`` unless it is one of this domain's p2m frames)."""
        return self.p2m.pfn_of(mfn)

    def owns(self, mfn: int) -> bool:
        """True if ``mfn`` backs one of this domain's pfns."""
        return self.p2m.owns(mfn)

    def mfn_valid_for(self, mfn: int) -> bool:
        """True if ``mfn`` is a machine frame owned by this domain (p2m or not), as Xen's
        ``mfn_valid(mfn) && page_get_owner(mfn_to_page(mfn)) == d``."""
        machine = self.machine
        return 0 <= mfn < machine.nr_frames and machine.mv_owner[mfn] == self.domid

    def maddr_of_pfn(self, pfn: int, offset: int = 0) -> int:
        """Machine address of byte ``offset`` (0..4095) of ``pfn``."""
        if not 0 <= offset < PAGE_SIZE:
            raise ValueError(f"offset {offset:#x} outside a page")
        return (self.p2m.mfn_of(pfn) << PAGE_SHIFT) | offset

    def _checked_mfn(self, mfn: int) -> int:
        if not self.mfn_valid_for(mfn):
            raise ValueError(f"mfn {mfn:#x} is not owned by domain {self.domid}")
        return int(mfn)

    @staticmethod
    def _check_in_page(offset: int, nbytes: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > PAGE_SIZE:
            raise ValueError(f"range [{offset:#x}, +{nbytes:#x}) does not fit in a page")

    def frame_of_pfn(self, pfn: int) -> np.ndarray:
        """Writable ``numpy.uint8`` view of the frame backing ``pfn``."""
        return self.machine.frames[self.p2m.mfn_of(pfn)]

    def frame_of_mfn(self, mfn: int) -> np.ndarray:
        """Writable ``numpy.uint8`` view of ``mfn``, which must be owned by this domain."""
        return self.machine.frames[self._checked_mfn(mfn)]

    def read_pfn(self, pfn: int, offset: int = 0, nbytes: int = PAGE_SIZE) -> bytes:
        """Read ``nbytes`` at ``offset`` within ``pfn`` (the range must stay inside the page)."""
        self._check_in_page(offset, nbytes)
        return self.machine.read((self.p2m.mfn_of(pfn) << PAGE_SHIFT) + offset, nbytes)

    def write_pfn(self, pfn: int, data: BytesLike, offset: int = 0) -> None:
        """Write ``data`` at ``offset`` within ``pfn`` (the range must stay inside the page)."""
        src = memoryview(data).cast("B")
        self._check_in_page(offset, len(src))
        self.machine.write((self.p2m.mfn_of(pfn) << PAGE_SHIFT) + offset, src)

    def zero_pfn(self, pfn: int) -> None:
        """Fill the frame backing ``pfn`` with zeros."""
        self.machine.frames[self.p2m.mfn_of(pfn)] = 0

    def read_mfn(self, mfn: int, offset: int = 0, nbytes: int = PAGE_SIZE) -> bytes:
        """Read inside owned frame ``mfn`` (``ValueError`` if not owned or the range leaves the page)."""
        self._check_in_page(offset, nbytes)
        return self.machine.read((self._checked_mfn(mfn) << PAGE_SHIFT) + offset, nbytes)

    def write_mfn(self, mfn: int, data: BytesLike, offset: int = 0) -> None:
        """Write inside owned frame ``mfn`` (``ValueError`` if not owned or the range leaves the page)."""
        src = memoryview(data).cast("B")
        self._check_in_page(offset, len(src))
        self.machine.write((self._checked_mfn(mfn) << PAGE_SHIFT) + offset, src)

    def release(self) -> int:
        """Free every frame the domain owns (see ``MachineMemory.free_domain_frames``); returns the count."""
        return self.machine.free_domain_frames(self.domid)
