"""A ZIP of statement files, as banks offer for a month of daily statements.

Unpacking is bounded before anything is decompressed: at most MAX_MEMBERS
files and MAX_UNPACKED_BYTES in all, counted on the bytes actually inflated
(a member's declared size can lie), so a zip bomb costs at most that much.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from .model import StatementError

MAX_MEMBERS = 100
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"


def is_zip(data: bytes) -> bool:
    return data.startswith(_ZIP_MAGIC)


def unpack(data: bytes) -> list[tuple[str, bytes]]:
    """(name, content) of each statement file in the archive, in archive order.

    Folders, macOS resource forks and hidden files are skipped; an archive
    inside the archive is refused rather than opened.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [
            info
            for info in archive.infolist()
            if not info.is_dir()
            and not info.filename.startswith("__MACOSX/")
            and not info.filename.rsplit("/", 1)[-1].startswith(".")
        ]
        if not infos:
            raise _bad("the ZIP archive holds no statement file.")
        if len(infos) > MAX_MEMBERS:
            raise _bad(
                f"the ZIP archive holds {len(infos)} files; at most {MAX_MEMBERS} are "
                "imported at once. Split it."
            )
        members: list[tuple[str, bytes]] = []
        budget = MAX_UNPACKED_BYTES
        for info in infos:
            with archive.open(info) as member:
                content = member.read(budget + 1)
            budget -= len(content)
            if budget < 0:
                raise _bad(
                    f"the ZIP archive unpacks to more than {MAX_UNPACKED_BYTES} bytes; "
                    "statements are never that large, so it was refused."
                )
            if is_zip(content):
                raise _bad(f"{info.filename} is itself a ZIP archive; unpack it first.")
            members.append((info.filename, content))
        return members
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise _bad(f"the ZIP archive is damaged ({exc}); download it again.") from exc
    except (RuntimeError, NotImplementedError) as exc:
        # Encrypted members, or a compression method zipfile cannot read.
        raise _bad(f"the ZIP archive cannot be opened ({exc}); export it unencrypted.") from exc


def _bad(message: str) -> StatementError:
    return StatementError("bad_archive", message)
