"""Atomic file output: write to a temporary file in the target's folder, then rename over the target.

An interrupted or failed write never leaves a half-written file where a good one was, and leaves no
temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def apply_default_permissions(path: Path) -> None:
    """Give a file or folder made by `tempfile` (mode 0600/0700) the usual umask-based mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it atomically replaces `path`.

    suffix: the temporary file's suffix (some writers insist on one, e.g. '.npz' or '.weights.h5').
    The file gets the usual permissions (0o666 minus the umask), not mkstemp's 0o600.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: folder '{path.parent}' does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a file path")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        apply_default_permissions(tmp)
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
