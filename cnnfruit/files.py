"""Writing files so that a crash or kill never leaves a half-written one, and looking at a path
before opening it."""
import os
import re
import stat
import tempfile
import time

from cnnfruit.errors import CnnfruitError

TEMPORARY_PREFIX = ".tmp-"
# A temporary file's name carries its writer's process id (.tmp-<pid>-<random><suffix>), so that a
# folder can be cleaned of the ones no live writer owns.
_WRITER = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\d+)-")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write):
    """Call write(temporary_path) in path's folder, then move it into place.

    os.replace is atomic on POSIX: a reader, or a rerun after a crash, finds the old file or the
    new one, never a truncated mix. If write (or anything after it) fails, even by Ctrl-C, the
    temporary file is removed and the old file is left as it was. Only a hard kill (SIGKILL, power
    loss) between mkstemp and os.replace can leave a `.tmp-*` file beside the target, and
    remove_stale_temporaries clears those.
    """
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f"{TEMPORARY_PREFIX}{os.getpid()}-", suffix=suffix)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        fd = None
        write(temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _sync_folder(folder)


def _sync_folder(folder):
    """Make the rename itself durable; some file systems cannot fsync a folder, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder, unowned_after=0, stale_after=None):
    """Delete the `.tmp-*` files in folder whose writer is no longer running; returns their names.

    Those were left by a hard kill during a write. A name without a writer's pid is from a
    cnnfruit that did not record it, and is as stale. unowned_after: seconds since its last
    change before a file whose writer is not running on this machine counts as stale (a folder
    shared over the network may have writers elsewhere). stale_after: seconds after which any
    temporary file is stale, its writer's pid taken by another process or not.
    """
    removed = []
    now = time.time()
    for entry in os.scandir(folder):
        if not entry.name.startswith(TEMPORARY_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:  # its writer finished it meanwhile
            continue
        writer = _WRITER.match(entry.name)
        owned = writer is not None and _running(int(writer.group(1)))
        if (owned or age < unowned_after) and (stale_after is None or age < stale_after):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.name)
        except FileNotFoundError:  # its writer finished it after all
            pass
    return removed


def _running(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def same_file(a, b):
    """True when the paths a and b name one existing file (through links, or two spellings)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def existing_kind(path):
    """None if nothing is at path, "file" for a regular file (or a link to one), otherwise what is
    there in words ("a folder", "a FIFO (named pipe)", ...), found without opening it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None if not os.path.islink(path) else "a broken link"
    except NotADirectoryError:  # a path through a file: nothing can be there
        return None
    except OSError as err:  # a link to itself, say
        return err.strerror or str(err)
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "a device, not a file"


def described(kind):
    """existing_kind's answer as the end of a sentence about a path: "it is a folder", or the reason."""
    return f"it is {kind}" if kind.startswith("a ") else kind


def check_regular(path, what="file"):
    """path, if it names a regular file (links followed); otherwise a CnnfruitError, found without
    opening it: a FIFO would block the reader for ever, a device might never end."""
    kind = existing_kind(path)
    if kind == "file":
        return path
    if kind is None:
        raise CnnfruitError(f"{what} {path} does not exist")
    raise CnnfruitError(f"{what} {path} is {kind}" if kind.startswith(("a ", "not ")) else f"cannot read {what} {path}: {kind}")


def write_text_atomically(path, text):
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomically(path, write)
