"""Checksums and atomic extraction of dataset archives.

An archive is extracted into a temporary folder inside the data directory and its top folder is
renamed into place, so a reader never sees a half-extracted dataset and an interrupted extraction
leaves nothing behind. Two processes extracting at once (parallel trials) both succeed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from nas.errors import UserError

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks (archives are hundreds of MB)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str) -> None:
    """Raise UserError if `path`'s MD5 differs from `expected` (the file is kept: it is the user's)."""
    got = md5sum(path)
    if got != expected:
        raise UserError(
            f"checksum mismatch for {path}: expected md5 {expected}, got {got}; "
            "the archive is corrupt or a different file, so delete it and fetch it again."
        )


def extract_folder(archive: Path, folder: str, data_dir: Path) -> Path:
    """Extract the tar.gz `archive` and move its top-level `folder` to `data_dir/folder` atomically."""
    target = data_dir / folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", suffix=".extracting", dir=data_dir))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _safe_extractall(tar, tmp)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise UserError(f"could not extract {archive} ({err}); delete it and fetch it again.") from err
        extracted = tmp / folder
        if not extracted.is_dir():
            raise UserError(f"archive {archive} does not contain the expected folder {folder}/.")
        try:
            os.rename(extracted, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process renamed its copy first; both come from the same verified archive.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract refusing absolute paths, `..`, links and devices (the `data` filter of PEP 706)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    for member in tar.getmembers():  # Python without PEP 706: check by hand
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tar.extractall(dest)  # noqa: S202 - members checked above
