"""The one exception type users see: a message that says what is wrong and where, never a bare traceback."""
from __future__ import annotations

import errno
import os


class FitrainError(Exception):
    """A user-facing error. The CLI prints its message (no traceback) and exits with status 2."""


class ConfigError(FitrainError):
    """A recipe or command-line override that does not fit the schema."""


# what to do about an operating-system error, by errno
_ADVICE = {
    errno.ENOSPC: "the file system is full: free space there or write somewhere else, then rerun (it resumes)",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else, then rerun (it resumes)",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EACCES: "permission denied: fix the permissions or choose another location",
    errno.EPERM: "operation not permitted: fix the permissions or choose another location",
    errno.ENOTDIR: "a file stands where a directory is expected: remove or rename it, or choose another path",
    errno.EISDIR: "a directory stands where a file is expected: remove or rename it, or choose another path",
    errno.ENOENT: "it does not exist: check the path",
    errno.EEXIST: "something already exists there: remove it or choose another path",
    errno.ENAMETOOLONG: "the path is too long: choose a shorter one",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    errno.EIO: "an input/output error: the disk or network file system failed; check it, then rerun",
    errno.ESTALE: "a stale network file handle: the file changed on the server; rerun",
    errno.ENOMEM: "out of memory: use fewer workers or a smaller batch",
}


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: what failed, where, and what to do."""
    code = e.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    what = e.strerror or (str(e.args[0]) if e.args else type(e).__name__)
    where = ""
    if e.filename is not None:
        where = f" at {os.fsdecode(e.filename)}"
        if getattr(e, "filename2", None) is not None:
            where += f" -> {os.fsdecode(e.filename2)}"
    advice = _ADVICE.get(code, "")
    text = f"{what}{f' ({name})' if name else ''}{where}" + (f"; {advice}" if advice else "")
    return " ".join(text.split())
