"""The members of an image archive (a zip, or an uncompressed tar), listed without extracting
anything, and what is hostile in them refused before any member is read whole.

A member is located by where its stored bytes start in the archive and how many there are
(`Member`), so that one member can later be read with one ranged read: a tar member's data is
stored as is; a zip member's local header is read once here to find where its data starts
(the central directory does not say), and its data is stored or deflated.

Refused, naming the entry: paths that climb out (`../`, absolute, drive letters, backslashes),
links (symbolic and hard), devices and FIFOs, sparse files, extended headers over 1 MiB (tarfile
would read them whole into memory), zip entries that expand over 200x (and archives over 200x
in all), encrypted or exotically compressed zip entries, members cut short by the end of the
file, images over 64 MiB, and archives of more than `MAX_ARCHIVE_ENTRIES` entries. Compressed
tars are refused as a whole: a member of a .tar.gz cannot be read without all before it.
"""

from __future__ import annotations

import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from service.uploads import UploadRejected, head_bytes

MAX_ARCHIVE_ENTRIES = 4_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200
BOMB_ENTRY_FLOOR = 1_000_000  # entries smaller than this may compress well without suspicion
MAX_EXTENDED_HEADER = 1024 * 1024
STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader, 30 bytes
_COMPRESSED_MAGIC = {  # binary starts that no CSV has
    re.compile(rb"\x1f\x8b"): "gzip",
    re.compile(rb"BZh[1-9]1AY&SY"): "bzip2",
    re.compile(rb"\xfd7zXZ\x00"): "xz",
    re.compile(rb"\x28\xb5\x2f\xfd"): "zstd",
}
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Member:
    """One file inside an archive: its stored bytes are archive[offset : offset + size]."""

    name: str
    offset: int
    size: int
    method: int = STORED  # zip: STORED or DEFLATED; tar: always STORED
    raw_size: int = -1  # the size once inflated (-1: the same as size)
    crc: int = -1  # zip's CRC-32 of the inflated bytes (-1: none to check)

    @property
    def content_size(self) -> int:
        return self.size if self.raw_size < 0 else self.raw_size


Peek = Callable[[int], bytes]  # the first n bytes of the member's content


def archive_kind(file: IO[bytes], filename: str = "") -> str | None:
    """`zip` or `tar`, from the file's first bytes; None for anything else (a CSV), after
    refusing compressed tars and files whose name promises an archive they are not."""
    start = head_bytes(file, 512)
    if start[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if start[257:262] == b"ustar":
        return "tar"
    lowered = filename.lower()
    for magic, compression in _COMPRESSED_MAGIC.items():
        if magic.match(start):
            raise UploadRejected(
                f"{filename or 'the file'} is {compression}-compressed; upload an uncompressed .tar (or a .zip): "
                "a member of a compressed tar cannot be read without decompressing all before it"
            )
    if lowered.endswith(".zip"):
        raise UploadRejected("the file is named .zip but is not a zip archive")
    if lowered.endswith(".tar"):
        raise UploadRejected("the file is named .tar but is not a tar archive (ustar or pax)")
    return None


def is_unsafe_path(name: str) -> bool:
    return (
        name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or bool(_DRIVE.match(name))
        or any(part == ".." for part in name.split("/"))
    )


# ---- zip -----------------------------------------------------------------------------------


def iter_zip(file: IO[bytes], size: int, where: str = "") -> Iterator[tuple[Member, Peek]]:
    """Every file of a zip archive (folders left out), in archive order."""
    try:
        archive = zipfile.ZipFile(file)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRejected(f"not a readable zip archive{where}: {exc}") from exc
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise UploadRejected(f"the zip archive{where} has {len(infos)} entries; at most {MAX_ARCHIVE_ENTRIES}")
    total = 0
    for info in infos:
        name = info.filename
        if info.is_dir():
            continue
        label = f"zip entry {name!r}{where}"
        if is_unsafe_path(name):
            raise UploadRejected(f"{label} has an unsafe path")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) and info.file_size > BOMB_ENTRY_FLOOR:
            raise UploadRejected(f"{label} expands {info.file_size // max(info.compress_size, 1)}x: refused as a zip bomb")
        total += info.file_size
        if total > MAX_COMPRESSION_RATIO * max(size, 1):
            raise UploadRejected(f"the archive{where} expands too much: refused as a zip bomb")
        if info.flag_bits & 0x1:
            raise UploadRejected(f"{label} is encrypted; encrypted archives are refused")
        if info.compress_type not in (STORED, DEFLATED):
            raise UploadRejected(f"{label} uses compression method {info.compress_type}; accepted: stored or deflate")
        member = Member(name, _zip_data_offset(file, info, size, label), info.compress_size, info.compress_type,
                        info.file_size, info.CRC)  # fmt: skip
        yield member, _zip_peek(archive, info, label)


def _zip_data_offset(file: IO[bytes], info: zipfile.ZipInfo, size: int, label: str) -> int:
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise UploadRejected(f"{label} cannot be read: its local header is missing")
    fields = _LOCAL_HEADER.unpack(header)
    offset = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
    if offset + info.compress_size > size:
        raise UploadRejected(f"{label} is cut short: the archive ends inside it")
    return offset


def _zip_peek(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Peek:
    def peek(count: int) -> bytes:
        try:
            with archive.open(info) as entry:
                return entry.read(count)
        except (zipfile.BadZipFile, OSError, RuntimeError, zlib.error) as exc:  # RuntimeError: encrypted
            raise UploadRejected(f"{label} cannot be read: {exc}") from exc

    return peek


# ---- tar -----------------------------------------------------------------------------------


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile reads a GNU long name or a pax header whole into memory, whatever size its
    header claims: refuse big ones before it does."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        extended = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                    tarfile.SOLARIS_XHDTYPE)  # fmt: skip
        if self.type in extended and self.size > MAX_EXTENDED_HEADER:
            raise UploadRejected(
                f"the tar archive has a {self.size}-byte extended header at byte {self.offset}; "
                f"at most {MAX_EXTENDED_HEADER}: refused as a tar bomb"
            )
        return super()._proc_member(archive)


_TAR_TYPES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def iter_tar(file: IO[bytes], size: int, where: str = "") -> Iterator[tuple[Member, Peek]]:
    """Every file of an uncompressed tar archive (folders left out), in archive order."""
    try:
        archive = tarfile.open(fileobj=file, mode="r:", tarinfo=_GuardedTarInfo)
    except tarfile.TarError as exc:
        raise UploadRejected(f"not a readable tar archive{where}: {exc}") from exc
    entries = 0
    last = None
    while True:
        try:
            info = archive.next()
        except UploadRejected:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            after = f" after entry {last!r}" if last else ""
            raise UploadRejected(f"the tar archive{where} cannot be read{after}: {exc}") from exc
        if info is None:
            return
        archive.members.clear()  # tarfile keeps every header it read: an index of millions must not
        entries += 1
        if entries > MAX_ARCHIVE_ENTRIES:
            raise UploadRejected(f"the tar archive{where} has more than {MAX_ARCHIVE_ENTRIES} entries: refused as a tar bomb")
        name = last = info.name
        label = f"tar entry {name!r}{where}"
        if is_unsafe_path(name):
            raise UploadRejected(f"{label} has an unsafe path")
        if info.type in _TAR_TYPES:
            target = f" (to {info.linkname!r})" if info.issym() or info.islnk() else ""
            raise UploadRejected(f"{label} is {_TAR_TYPES[info.type]}{target}; only files and folders are accepted")
        if info.isdir():
            continue
        if info.issparse():
            raise UploadRejected(f"{label} is a sparse file: refused as a tar bomb")
        if not info.isreg():
            raise UploadRejected(f"{label} has entry type {info.type!r}; only files and folders are accepted")
        if info.offset_data + info.size > size:
            raise UploadRejected(f"{label} is cut short: the archive ends inside it")
        yield Member(name, info.offset_data, info.size), _tar_peek(file, info.offset_data, info.size)


def _tar_peek(file: IO[bytes], offset: int, size: int) -> Peek:
    def peek(count: int) -> bytes:
        file.seek(offset)
        return file.read(min(count, size))

    return peek


# ---- reading one member ---------------------------------------------------------------------


def unpack_member(stored: bytes, member: Member, label: str) -> bytes:
    """A member's content from its stored bytes: inflated, size- and CRC-checked."""
    if len(stored) != member.size:
        raise UploadRejected(f"{label} is cut short: {len(stored)} of {member.size} bytes")
    data = stored
    if member.method == DEFLATED:
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(stored, member.content_size + 1)
        except zlib.error as exc:
            raise UploadRejected(f"{label} cannot be inflated: {exc}") from exc
    elif member.method != STORED:
        raise UploadRejected(f"{label} uses compression method {member.method}; accepted: stored or deflate")
    if len(data) != member.content_size:
        raise UploadRejected(f"{label} inflates to {len(data)} bytes, not the {member.content_size} its archive declares")
    if member.crc >= 0 and zlib.crc32(data) != member.crc:
        raise UploadRejected(f"{label} is corrupt (CRC-32 mismatch)")
    return data


def read_member(file: IO[bytes], member: Member, label: str) -> bytes:
    file.seek(member.offset)
    return unpack_member(file.read(member.size), member, label)
