"""Debian's packages as test material: fetch them with ``apt-get download``, unpack them without dpkg, and build a
busybox initramfs.

A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` holds the files; both formats are read here with the standard
library, so only the download needs Debian's tools (the tests that use this skip where ``apt-get`` is absent).
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

#: Where fetched packages are kept between runs.
CACHE = Path(os.environ.get("XENPY_DEBIAN_CACHE", Path.home() / ".cache" / "xenpy" / "debian"))
#: Debian's cloud kernel (CONFIG_XEN_PV, an LZ4 bzImage) and a static busybox.
KERNEL_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"


class FetchError(Exception):
    """A package could not be fetched or read (the reason in one line)."""


def apt_available() -> bool:
    """Whether ``apt-get`` can be run here."""
    return shutil.which("apt-get") is not None and shutil.which("apt-cache") is not None


def _resolve(package: str) -> str:
    """The real package behind a metapackage (``linux-image-cloud-amd64`` depends on one versioned image)."""
    if package != KERNEL_PACKAGE:
        return package
    out = subprocess.run(["apt-cache", "depends", package], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split(": ", 1)[1]
    raise FetchError(f"apt-cache depends {package}: no linux-image dependency")


def fetch(package: str) -> Path:
    """The ``.deb`` of ``package`` in :data:`CACHE`, downloaded with ``apt-get download`` if not there yet."""
    real = _resolve(package)
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob(f"{real}_*.deb"))
    if found:
        return found[-1]
    result = subprocess.run(["apt-get", "download", real], cwd=CACHE, capture_output=True, text=True, check=False)
    found = sorted(CACHE.glob(f"{real}_*.deb"))
    if result.returncode != 0 or not found:
        reason = (result.stderr.strip().splitlines() or ["no .deb"])[-1]
        raise FetchError(f"apt-get download {real}: {reason}")
    return found[-1]


def _ar_members(data: bytes) -> dict[str, bytes]:
    if not data.startswith(b"!<arch>\n"):
        raise FetchError("not an ar archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def deb_files(deb: Path) -> dict[str, bytes]:
    """The regular files of a ``.deb`` (paths without the leading ``./``), read with the standard library."""
    members = _ar_members(deb.read_bytes())
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise FetchError(f"{deb.name}: no data.tar member")
    raw = members[name]
    if name.endswith(".xz"):
        raw = lzma.decompress(raw)
    elif name.endswith(".gz"):
        raw = gzip.decompress(raw)
    elif not name.endswith(".tar"):
        raise FetchError(f"{deb.name}: {name} is compressed in a way this reader does not know")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for info in tar:
            if info.isfile():
                extracted = tar.extractfile(info)
                assert extracted is not None
                files[info.name.removeprefix("./")] = extracted.read()
    return files


def kernel_image() -> bytes:
    """Debian's cloud kernel (``boot/vmlinuz-*``), as shipped: a bzImage."""
    files = deb_files(fetch(KERNEL_PACKAGE))
    for path, data in files.items():
        if path.startswith("boot/vmlinuz-"):
            return data
    raise FetchError(f"{KERNEL_PACKAGE}: no boot/vmlinuz-*")


def busybox_binary() -> bytes:
    """The static busybox of ``busybox-static``."""
    files = deb_files(fetch(BUSYBOX_PACKAGE))
    for path in ("bin/busybox", "usr/bin/busybox"):
        if path in files:
            return files[path]
    raise FetchError(f"{BUSYBOX_PACKAGE}: no busybox binary")


def _cpio_entry(name: str, mode: int, data: bytes = b"", *, ino: int, rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4) + data
    return out + b"\0" * (-len(out) % 4)


def initramfs(init_script: str, busybox: bytes) -> bytes:
    """A gzip-compressed ``newc`` cpio archive: ``/bin/busybox``, ``/init`` (``init_script``, run by busybox sh),
    ``/dev/console``, the mount points ``/proc``, ``/sys``, ``/dev`` and the directories ``busybox --install``
    fills (``/sbin``, ``/usr/bin``, ``/usr/sbin``)."""
    entries = [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("sbin", stat.S_IFDIR | 0o755, b""),
        ("usr", stat.S_IFDIR | 0o755, b""),
        ("usr/bin", stat.S_IFDIR | 0o755, b""),
        ("usr/sbin", stat.S_IFDIR | 0o755, b""),
        ("dev", stat.S_IFDIR | 0o755, b""),
        ("proc", stat.S_IFDIR | 0o755, b""),
        ("sys", stat.S_IFDIR | 0o755, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox),
        ("init", stat.S_IFREG | 0o755, ("#!/bin/busybox sh\n" + init_script).encode()),
    ]
    archive = b"".join(_cpio_entry(n, m, d, ino=i + 1) for i, (n, m, d) in enumerate(entries))
    archive += _cpio_entry("dev/console", stat.S_IFCHR | 0o600, ino=len(entries) + 1, rdev=(5, 1))
    archive += _cpio_entry("TRAILER!!!", 0, ino=0)
    return gzip.compress(archive + b"\0" * (-len(archive) % 512), mtime=0)
