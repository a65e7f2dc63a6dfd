"""Archives of image folders (.tar.gz, .tgz, .zip), extracted once into the cache, with the limits that keep
a hostile archive from filling the disk or escaping its folder: total expansion, member count, and members that
are only files and folders inside it."""

import contextlib
import hashlib
import re
import stat
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

from imagerec import fileio
from imagerec.errors import UserError, printable, size_text


@contextlib.contextmanager
def reading_archive(path: Path):
    """Turn the many ways a damaged or mislabelled archive fails into one line."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read archive {path}: {reason}") from None


# Images barely compress (JPEG and PNG are compressed already), so an image archive expands about 1-3x; an
# archive bomb expands a thousandfold. Unless max_extract_bytes says otherwise, this ratio is the limit.
EXPANSION_RATIO_LIMIT = 100


def check_expansion(path: Path, total_bytes: int, max_extract_bytes: int | None) -> None:
    """UserError when the archive's members add up to more than the limit (see EXPANSION_RATIO_LIMIT)."""
    if max_extract_bytes is not None:
        limit, why = max_extract_bytes, "`max_extract_bytes`"
    else:
        limit, why = EXPANSION_RATIO_LIMIT * path.stat().st_size, f"{EXPANSION_RATIO_LIMIT}x the archive's size"
    if total_bytes > limit:
        raise UserError(f"{path} expands to {size_text(total_bytes)}, over the limit of {size_text(limit)} "
                        f"({why}); if the archive is genuine, raise `max_extract_bytes`")


def _file_key(path: Path) -> str:
    status = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}".encode()).hexdigest()[:16]


def extract_archive(path: Path, cache: Path, max_extract_bytes: int | None = None) -> Path:
    """Extract once into the cache (keyed by path, size, mtime); later calls reuse the folder.

    The members' declared sizes are summed before anything is written, and counted again as each member is
    written (zipfile and tarfile both stop at a member's declared size); over the limit, nothing is left.
    """
    target = cache / "extracted" / f"{path.name}-{_file_key(path)}"
    if target.is_dir():
        return target
    print(printable(f"imagerec: extracting {path} to {target}"), file=sys.stderr)
    with reading_archive(path), fileio.atomic_path(target) as temporary:
        temporary.mkdir()
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [(info, info.file_size) for info in archive.infolist()]
                _check_members(path, [(info.filename, _zip_kind(info)) for info in archive.infolist()])
                _extract_counted(path, members, lambda info: archive.extract(info, temporary), max_extract_bytes)
        else:
            with tarfile.open(path, "r:gz") as archive:
                members = [(member, member.size if member.isfile() else 0) for member in archive.getmembers()]
                _check_members(path, [(member.name, _tar_kind(member)) for member, _ in members])
                _extract_counted(path, members, lambda member: archive.extract(member, temporary, filter="data"),
                                 max_extract_bytes)  # the "data" filter: a second guard against odd members
    return target


def _extract_counted(path: Path, members: list, extract, max_extract_bytes: int | None) -> None:
    check_expansion(path, sum(size for _, size in members), max_extract_bytes)
    written = 0
    for member, size in members:
        extract(member)
        written += size
        check_expansion(path, written, max_extract_bytes)


# A real image, compressed, is hundreds of bytes at least; 100,000 empty members fit in 472 KB of tar.gz and took
# 129 s and 100,000 inodes to extract. An archive may hold MIN_MEMBERS, or one member per this many bytes.
BYTES_PER_MEMBER = 64
MIN_MEMBERS = 10_000


def _check_members(path: Path, members: list) -> None:
    """UserError for an archive with too many members, or one whose member points outside its folder (an
    absolute path, a '..') or is anything but a file or a folder (a link, a device)."""
    limit = max(MIN_MEMBERS, path.stat().st_size // BYTES_PER_MEMBER)
    if len(members) > limit:
        raise UserError(f"{path} holds {len(members):,} members, over the limit of {limit:,} for an archive of its "
                        f"size (one per {BYTES_PER_MEMBER} bytes): not an archive of images")
    for name, kind in members:
        parts = Path(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
            raise UserError(printable(f"{path} has a member that points outside its folder: {name[:200]}; refusing "
                                      f"to extract it"))
        if kind not in ("file", "folder"):
            raise UserError(printable(f"{path} has a member that is a {kind}: {name[:200]}; image archives hold "
                                      f"files and folders only"))


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "folder"
    return "link" if member.issym() or member.islnk() else "special file"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16  # Unix mode, when a Unix tool wrote the archive (often without its type bits)
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "special file"
    return "folder" if info.is_dir() else "file"


