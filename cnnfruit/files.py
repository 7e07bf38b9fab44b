"""Writing files so that a crash or kill never leaves a half-written one."""
import os
import re
import tempfile
import time

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


def write_text_atomically(path, text):
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomically(path, write)
