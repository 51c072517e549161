"""The build context: a tar stream of a checked model tree (regular files and directories only;
anything else, a symlink included, is refused before the engine sees it)."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

from .errors import BuildFailed

__all__ = ["write_context_tar"]


def write_context_tar(root: Path, dest: Path, *, max_bytes: int) -> int:
    """Write the tree at ``root`` to ``dest`` as an uncompressed tar and return its size
    (blocking; run it in a thread). Large models stream from disk, never from memory.

    Owners are normalised to 0:0 and times to 0, so the same tree gives the same bytes.
    ``.git`` directories are left out. Raises ``BuildFailed`` for a symlink or special file
    or when the tree is larger than ``max_bytes``.
    """
    total = 0
    with tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            rel_dir = os.path.relpath(dirpath, root)
            for name in [*dirnames, *sorted(filenames)]:
                full = os.path.join(dirpath, name)
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                st = os.lstat(full)
                info = tarfile.TarInfo(rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if stat.S_ISDIR(st.st_mode):
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    total += st.st_size
                    if total > max_bytes:
                        raise BuildFailed("build_failed", f"build context over {max_bytes} bytes")
                    info.size, info.mode = st.st_size, 0o755 if st.st_mode & 0o111 else 0o644
                    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
                    with os.fdopen(fd, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a special file"
                    raise BuildFailed("build_failed", f"{rel} is {kind}; not sent to the engine")
    return dest.stat().st_size
