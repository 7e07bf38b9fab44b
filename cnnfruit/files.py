"""Writing files so that a crash or kill never leaves a half-written one."""
import os
import tempfile


def write_atomically(path, write):
    """Call write(temporary_path) in path's folder, then move it into place.

    os.replace is atomic on POSIX: a reader, or a rerun after a crash, finds the old file or the
    new one, never a truncated mix.
    """
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1]
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    # mkstemp makes the file private (0600); a saved model or picture gets the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        write(temporary)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_text_atomically(path, text):
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomically(path, write)
