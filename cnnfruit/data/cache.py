"""Decode many image files on worker processes, keeping their decoded pixels in an on-disk cache.

`read_image_folder` lists the files; `load_folders` fills one preallocated uint8 array with
their pixels: from the cache where a file is unchanged, by `preprocess.load_image` otherwise.

Decoding runs on worker processes, forked (Linux only; elsewhere, and for one worker or a few
files, it runs in the calling process). Threads were tried first and measured slower than one
process: a thread holds the GIL about half of each image (Pillow parses headers in Python), and
threads queueing for it did no better than one thread while burning 50% more CPU; two forked
processes loaded 70,000 photos 1.5 times as fast as four threads (benchmarks/results-amd-epyc-zen4.txt). Fork,
not spawn or forkserver, because those import the caller's main script again in every worker,
which reruns a script that lacks an `if __name__ == "__main__":` guard. Forking a process that
runs other threads is risky only for locks those threads hold; the workers touch nothing but
Pillow and numpy, and the loader's own threads (cache look-ups) have finished before the fork.
Workers ignore Ctrl-C: the calling process gets it, and stops them.

Where the cache lives, first match wins:
  1. the `cache_dir` argument (`read_image_folder(..., cache_dir=...)`); False turns it off;
  2. the environment variable CNNFRUIT_CACHE_DIR; the value `off` turns it off;
  3. $XDG_CACHE_HOME/cnnfruit, when XDG_CACHE_HOME is an absolute path;
  4. ~/.cache/cnnfruit.
It is only a cache: delete it whenever you like. It takes about 3 KB per image (32 x 32 x 3
bytes) and is never pruned, so a folder that is gone leaves its file behind until you do.

What it holds: one .npz file per folder of images, named by a digest of its key. The key is the
folder's absolute path, the image size, `preprocess.PREPROCESS_VERSION`, Pillow's version and
this file format's version: a change to any of them (a new `load_image`, a Pillow upgrade)
starts afresh. Inside, each image is keyed by its file name, size in bytes and modification time
in nanoseconds; a file whose key changed, and only that file, is decoded again, and only the
folders where something changed are written again (atomically, by files.write_atomically).

The cache is never trusted blindly. It is read with allow_pickle=False (never pickle); every
array must have the expected name, dtype and shape; the file repeats its whole key, which must
match; the zip's CRC-32 covers every byte. A file that is damaged, truncated, foreign or
unreadable is ignored and rebuilt: never a traceback, never wrong pixels. A file modified less
than RACY_SECONDS before the load began is decoded but not cached: file systems keep coarse
modification times, so a second change within the same tick would keep its size and time, and
only an older time vouches for the contents (git calls such entries "racily clean").
"""
import hashlib
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from cnnfruit.errors import CnnfruitError
from cnnfruit.files import write_atomically
from cnnfruit.config import IMAGE_SIZE
from cnnfruit.data.preprocess import PREPROCESS_VERSION, load_image

CACHE_FORMAT = 1
CACHE_DIR_VARIABLE = "CNNFRUIT_CACHE_DIR"
OFF = "off"
RACY_SECONDS = 2
CHUNK = 64  # files a decode task takes: enough to amortise a task, few enough to share evenly
LOOK_UP_THREADS = 4  # reading cache files: mostly waiting for the disk and zlib, which release the GIL
ARRAYS = ("key", "names", "sizes", "mtimes", "pixels")


@dataclass(frozen=True)
class ImageFile:
    name: str  # the file's name in its folder
    size: int  # bytes, as listed; -1 if it could not be stat'ed (decoded, never cached)
    mtime_ns: int


@dataclass
class Folder:
    path: str  # absolute
    files: list  # ImageFile, in the order their rows are filled
    rows: np.ndarray  # (len(files),) int64: the output row of each file


@dataclass
class LoadStats:
    files: int = 0
    decoded: int = 0  # files decoded by load_image (the rest came from the cache)
    cached: int = 0
    failures: list = field(default_factory=list)  # (row, path, message) of each unreadable file
    cache_dir: str = None  # None when the cache is off
    cache_problem: str = None  # why the cache could not be written, when it could not
    processes: int = 0  # worker processes that decoded; 0: decoded in the calling process
    seconds: float = 0.0


def default_workers():
    """One worker process for each processor this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_cache_dir(cache_dir=None):
    """The cache folder (absolute) that cache_dir selects, or None when caching is off."""
    if cache_dir is False:
        return None
    if cache_dir is not None and cache_dir is not True:
        return os.path.abspath(os.fspath(cache_dir))
    variable = os.environ.get(CACHE_DIR_VARIABLE, "")
    if variable.strip().lower() == OFF:
        return None
    if variable:
        return os.path.abspath(os.path.expanduser(variable))
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cnnfruit")


def cache_key(folder, size):
    from PIL import __version__ as pillow_version

    parts = [b"cnnfruit image cache", str(CACHE_FORMAT), os.fsencode(folder), str(size),
             str(PREPROCESS_VERSION), pillow_version]
    return b"\0".join(part if isinstance(part, bytes) else part.encode("ascii") for part in parts)


def cache_file(cache_dir, key):
    return os.path.join(cache_dir, hashlib.sha256(key).hexdigest()[:40] + ".npz")


@dataclass
class CachedFolder:
    index: dict  # file name -> position in the lists below
    sizes: list  # ints: comparing numpy scalars one by one costs more than the cache saves
    mtimes: list
    pixels: np.ndarray  # (n, size, size, 3) uint8; None once copied out


def read_cache(path, key, size):
    """The CachedFolder stored at path, or None if there is none or it is not exactly right."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted(ARRAYS):
                return None
            arrays = {name: z[name] for name in ARRAYS}
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - damaged, truncated or foreign: any failure means "rebuild"
        return None
    n = len(arrays["sizes"])
    expected = {"key": (np.uint8, None), "names": (np.uint8, None), "sizes": (np.int64, (n,)),
                "mtimes": (np.int64, (n,)), "pixels": (np.uint8, (n, size, size, 3))}
    for name, (dtype, shape) in expected.items():
        array = arrays[name]
        if array.dtype != dtype or (shape is None and array.ndim != 1) or (shape is not None and array.shape != shape):
            return None
    if arrays["key"].tobytes() != key or n == 0:
        return None
    names = [os.fsdecode(name) for name in arrays["names"].tobytes().split(b"\0")]
    if len(names) != n or len(set(names)) != n:
        return None
    return CachedFolder(dict(zip(names, range(n))), arrays["sizes"].tolist(), arrays["mtimes"].tolist(), arrays["pixels"])


def write_cache(path, key, files, pixels):
    names = np.frombuffer(b"\0".join(os.fsencode(f.name) for f in files), dtype=np.uint8)

    def write(temporary):
        np.savez(temporary, key=np.frombuffer(key, dtype=np.uint8), names=names,
                 sizes=np.array([f.size for f in files], dtype=np.int64),
                 mtimes=np.array([f.mtime_ns for f in files], dtype=np.int64), pixels=pixels)

    write_atomically(path, write)


def _reuse(folder, cache_dir, size, out):
    """Copy the unchanged files' pixels from folder's cache into out; a bool mask of those reused."""
    key = cache_key(folder.path, size)
    cached = read_cache(cache_file(cache_dir, key), key, size)
    reused = np.zeros(len(folder.files), dtype=bool)
    if cached is None:
        return reused, None
    positions = []
    for i, f in enumerate(folder.files):
        at = cached.index.get(f.name)
        if at is not None and f.size >= 0 and cached.sizes[at] == f.size and cached.mtimes[at] == f.mtime_ns:
            reused[i] = True
            positions.append(at)
    out[folder.rows[reused]] = cached.pixels[positions]
    cached.pixels = None  # copied: holding every folder's until the end would double the memory
    return reused, cached


def decode_files(folder, names, size):
    """Decode folder's files names: (their pixels as bytes of (n, size, size, 3) uint8, zero
    where a file failed, [(position in names, message)] of those that failed). Runs in a worker."""
    pixels = np.zeros((len(names), size, size, 3), dtype=np.uint8)
    failures = []
    for i, name in enumerate(names):
        try:
            pixels[i] = load_image(os.path.join(folder, name), size)
        except CnnfruitError as err:
            failures.append((i, str(err)))
    return pixels.tobytes(), failures


def _ignore_ctrl_c():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _InCallingProcess:
    """The executor for one worker or few files: each task runs when its result is asked for."""

    class Task:
        def __init__(self, function, args):
            self.function, self.args = function, args

        def result(self):
            return self.function(*self.args)

    def submit(self, function, *args):
        return self.Task(function, args)

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def _decoder(workers, files):
    """(executor, worker processes) for decoding files: forked workers, or the calling process
    where that is better or the only way (one worker, under two chunks of files, not Linux)."""
    if workers < 2 or files < 2 * CHUNK or not sys.platform.startswith("linux"):
        return _InCallingProcess(), 0
    from PIL import Image

    Image.preinit()  # import Pillow and its common plugins once, here, not in every worker
    workers = min(workers, -(-files // CHUNK))
    context = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_ctrl_c), workers


def _store(folder, cache_dir, size, out, keep, reused, cached):
    """Write folder's cache with the files in mask keep, unless it holds exactly those already.

    Every reused file has an entry of its own in the cache, so the cache holds exactly the kept
    files when they were all reused and it has no other entries.
    """
    if cached is not None and not (keep & ~reused).any() and keep.sum() == len(cached.index):
        return
    files = [f for f, k in zip(folder.files, keep) if k]
    key = cache_key(folder.path, size)
    path = cache_file(cache_dir, key)
    if files:
        write_cache(path, key, files, out[folder.rows[keep]])
    elif cached is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def load_folders(folders, out, *, size=IMAGE_SIZE, cache_dir=None, workers=None, stop_at_failure=True,
                 progress=None):
    """Fill out[row] with the pixels of every file of folders; returns LoadStats.

    A file that load_image cannot read leaves its row as it was and is listed in the stats'
    failures. With stop_at_failure the loading stops at the first one, in the folders' order (the
    same one whatever the number of workers), and the failures list holds only it. workers: the
    processes that decode (default: one per processor). progress, if given, is called now and
    then with (files done, files in all), from the calling thread.
    """
    started = time.perf_counter()
    stats = LoadStats(files=sum(len(folder.files) for folder in folders), cache_dir=resolve_cache_dir(cache_dir))
    _Loader(folders, out, size, stats, progress).run(workers or default_workers(), stop_at_failure)
    stats.seconds = time.perf_counter() - started
    return stats


class _Loader:
    """One load_folders call: cache look-ups on threads, then decoding on worker processes (the
    threads are gone before any fork); results, cache writes and progress on this thread."""

    def __init__(self, folders, out, size, stats, progress):
        self.folders, self.out, self.size, self.stats, self.progress = folders, out, size, stats, progress
        self.done = 0
        self.racy_after = time.time_ns() - RACY_SECONDS * 10**9
        self.writable = stats.cache_dir is not None

    def run(self, workers, stop_at_failure):
        looked_up = self.look_up_all()
        tasks = []  # (folder index, indices of the folder's files to decode), in folder order
        for f, (reused, _) in enumerate(looked_up):
            missing = np.flatnonzero(~reused)
            tasks += [(f, missing[start:start + CHUNK]) for start in range(0, len(missing), CHUNK)]
        decoder, self.stats.processes = _decoder(workers, sum(len(chunk) for _, chunk in tasks))
        try:
            pending = [decoder.submit(decode_files, self.folders[f].path, [self.folders[f].files[i].name for i in chunk],
                                      self.size) for f, chunk in tasks]
            self.collect(tasks, pending, looked_up, stop_at_failure)
        except BrokenProcessPool:
            raise CnnfruitError("a process decoding images died (out of memory?); workers=1 decodes in this "
                                "process") from None
        finally:
            decoder.shutdown(wait=True, cancel_futures=True)

    def look_up_all(self):
        """(reused mask, CachedFolder or None) of every folder, the reused pixels copied to out."""
        if self.stats.cache_dir is None:
            looked_up = [(np.zeros(len(folder.files), dtype=bool), None) for folder in self.folders]
        else:
            with ThreadPoolExecutor(LOOK_UP_THREADS, thread_name_prefix="cnnfruit-cache") as pool:
                looked_up = list(pool.map(self.look_up, self.folders))
        for reused, _ in looked_up:
            self.stats.cached += int(reused.sum())
        self.advance(self.stats.cached)
        return looked_up

    def collect(self, tasks, pending, looked_up, stop_at_failure):
        """Copy the decoded chunks into out, in order, and write each folder's cache as soon as
        its last chunk is in, while the workers decode the next ones."""
        ok = [reused.copy() for reused, _ in looked_up]  # the files whose pixels are in out
        tasks_of = [[] for _ in self.folders]
        for n, (f, _) in enumerate(tasks):
            tasks_of[f].append(n)
        for f, folder in enumerate(self.folders):
            for n in tasks_of[f]:
                chunk = tasks[n][1]
                pixels, failures = pending[n].result()
                pending[n] = None  # copied below: holding every chunk to the end would double the memory
                self.out[folder.rows[chunk]] = np.frombuffer(pixels, dtype=np.uint8).reshape(-1, *self.out.shape[1:])
                ok[f][chunk] = True
                self.stats.decoded += len(chunk) - len(failures)
                for i, message in failures:
                    ok[f][chunk[i]] = False
                    path = os.path.join(folder.path, folder.files[chunk[i]].name)
                    self.stats.failures.append((int(folder.rows[chunk[i]]), path, message))
                if failures and stop_at_failure:
                    del self.stats.failures[1:]
                    return
                self.advance(len(chunk))
            self.store(f, ok, looked_up)

    def look_up(self, folder):
        if self.stats.cache_dir is None:
            return np.zeros(len(folder.files), dtype=bool), None
        return _reuse(folder, self.stats.cache_dir, self.size, self.out)

    def store(self, f, ok, looked_up):
        if not self.writable:
            return
        folder, (reused, cached) = self.folders[f], looked_up[f]
        trusted = np.array([0 <= file.mtime_ns < self.racy_after for file in folder.files], dtype=bool)
        try:
            os.makedirs(self.stats.cache_dir, exist_ok=True)
            _store(folder, self.stats.cache_dir, self.size, self.out, ok[f] & trusted, reused, cached)
        except OSError as err:  # a full disk or a read-only cache: loading goes on, the next one decodes again
            self.stats.cache_problem = f"cannot write the image cache in {self.stats.cache_dir}: {err.strerror or err}"
            self.writable = False

    def advance(self, count):
        self.done += count
        if self.progress is not None and count:
            self.progress(self.done, self.stats.files)
