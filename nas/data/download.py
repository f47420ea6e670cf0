"""Fetching dataset archives over HTTP(S) with checksum verification.

`DOWNLOADS` is the only place that knows URLs; tests point it at a local server. A download
streams into a hidden temp file in the data directory (same filesystem, so nothing large crosses
devices), its MD5 is computed on the fly, and the file is deleted whatever happens, so a failed or
corrupt download leaves the data directory as it was.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nas.errors import UserError

CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    """Where a dataset archive lives and its published MD5."""

    url: str
    md5: str


DOWNLOADS: dict[str, Remote] = {
    "cifar10": Remote(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Remote(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


@contextmanager
def downloaded(url: str, md5: str, data_dir: Path) -> Iterator[Path]:
    """Download `url` to a temp file in `data_dir`, verify its MD5, yield the path, then delete it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".download.", suffix=".part", dir=data_dir)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out)
        if got != md5:
            raise UserError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}; nothing was kept.")
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, out) -> str:
    """Copy `url` into the open file `out`, returning the MD5 of what was received."""
    digest = hashlib.md5(usedforsecurity=False)
    show = sys.stderr.isatty()
    label = url.rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if show:
                    _progress(label, done, total)
    except urllib.error.HTTPError as err:
        raise UserError(
            f"could not download {url}: HTTP {err.code} {err.reason}; retry later or use --data-dir."
        ) from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"could not download {url} ({reason}); check the network or use --data-dir.") from err
    if show:
        sys.stderr.write("\n")
    return digest.hexdigest()


def _progress(label: str, done: int, total: int) -> None:
    mib = 1 << 20
    if total:
        line = f"\rdownloading {label}: {done / mib:.1f}/{total / mib:.1f} MiB ({100 * done // total}%)"
    else:
        line = f"\rdownloading {label}: {done / mib:.1f} MiB"
    sys.stderr.write(line)
    sys.stderr.flush()
