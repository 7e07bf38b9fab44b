"""The decoded-image cache and the thread pool: same pixels always, only changed files decoded again."""
import os
import threading

import numpy as np
import pytest

from cnnfruit.data import cache as image_cache
from cnnfruit.data.datasets import fingerprint, read_image_folder
from cnnfruit.errors import CnnfruitError

from helpers import backdate, class_folders, split_folders, write_images


@pytest.fixture
def decoded(monkeypatch):
    """The paths load_image decodes during a test, in no particular order."""
    paths = []
    original = image_cache.load_image

    def counting(path, size):
        paths.append(str(path))
        return original(path, size)

    monkeypatch.setattr(image_cache, "load_image", counting)
    return paths


def tree(tmp_path):
    return backdate(split_folders(tmp_path / "fruits", splits=("train", "test", "val"), classes=("a", "b", "c")))


def read(root, cache, workers=1, **options):
    """In this process by default, where the decoded fixture sees every decode."""
    return read_image_folder(root, cache_dir=cache, workers=workers, **options)


def big_tree(tmp_path):
    """Enough files (300) for worker processes to be worth starting."""
    return backdate(class_folders(tmp_path / "fruits", per_class=100))


def die_in_worker(folder, names, size):
    os._exit(3)


def assert_same(a, b):
    assert a.class_names == b.class_names
    for part in ("train", "test", "val"):
        x, y = getattr(a, part), getattr(b, part)
        if x is None or y is None:
            assert x is y
            continue
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.paths == y.paths
    assert fingerprint(a) == fingerprint(b)


def test_cached_and_uncached_loads_are_identical(tmp_path, decoded):
    root, cache = tree(tmp_path), tmp_path / "cache"
    uncached = read(root, False)
    assert not cache.exists() and len(decoded) == 24
    first = read(root, cache)
    assert first.loading.decoded == 24 and first.loading.cached == 0 and len(os.listdir(cache)) == 9
    decoded.clear()
    second = read(root, cache)
    assert decoded == [] and second.loading.cached == 24 and second.loading.decoded == 0
    assert_same(uncached, first)
    assert_same(uncached, second)


def test_only_changed_and_added_files_are_decoded_again_and_removed_ones_dropped(tmp_path, decoded):
    root, cache = tree(tmp_path), tmp_path / "cache"
    read(root, cache)
    changed = root / "train" / "b" / f"{100 * 5 + 1}.png"
    write_images(changed.parent, 1, label=9, start=501)  # other pixels, same name
    added = write_images(root / "test" / "c", 1, label=7, start=999)[0]
    (root / "val" / "a" / "300.png").unlink()
    backdate(changed, seconds=30)
    backdate(added, seconds=30)
    decoded.clear()
    again = read(root, cache)
    assert sorted(decoded) == sorted([str(changed), added])
    assert again.loading.decoded == 2 and again.loading.cached == 22
    assert_same(again, read(root, False))
    decoded.clear()
    assert_same(read(root, cache), again) and decoded == []  # and the cache now holds the new state


def test_a_file_modified_just_now_is_not_cached_until_it_is_older(tmp_path, decoded):
    root, cache = tree(tmp_path), tmp_path / "cache"
    fresh = write_images(root / "train" / "a", 1, label=5, start=777)[0]  # modified this instant
    read(root, cache)
    decoded.clear()
    read(root, cache)
    assert decoded == [fresh]  # its time might not tick if it changed again: decoded until it is old
    backdate(root)
    read(root, cache)
    decoded.clear()
    read(root, cache)
    assert decoded == []


def cache_files(cache):
    return sorted(cache / name for name in os.listdir(cache))


def flip_a_pixel_byte(path, contents):
    data = bytearray(contents[path])
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def foreign_npz(path, contents):
    np.savez(path, pixels=np.zeros((4, 32, 32, 3), np.uint8))


def another_folders_cache(path, contents):
    # a well-formed cache file, but of another folder: as if copied, or a digest collision
    paths = sorted(contents)
    path.write_bytes(contents[paths[(paths.index(path) + 1) % len(paths)]])


def pickled_object_array(path, contents):
    arrays = {name: np.array([{"not": "data"}], dtype=object) for name in image_cache.ARRAYS}
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", [
    flip_a_pixel_byte,
    lambda path, contents: path.write_bytes(contents[path][: len(contents[path]) // 2]),  # truncated
    lambda path, contents: path.write_bytes(b""),
    lambda path, contents: path.write_bytes(b"\x93NUMPY garbage" * 100),
    foreign_npz,
    another_folders_cache,
    pickled_object_array,
], ids=["flipped byte", "truncated", "empty", "garbage", "foreign npz", "another folder's", "pickled objects"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(tmp_path, decoded, damage):
    root, cache = tree(tmp_path), tmp_path / "cache"
    expected = read(root, cache)
    contents = {path: path.read_bytes() for path in cache_files(cache)}
    for path in contents:
        damage(path, contents)
    decoded.clear()
    rebuilt = read(root, cache)
    assert len(decoded) == 24  # nothing trusted
    assert_same(rebuilt, expected)
    decoded.clear()
    assert_same(read(root, cache), expected) and decoded == []  # and rewritten whole


def test_a_cache_entry_of_the_wrong_shape_is_not_trusted(tmp_path, decoded):
    root, cache = tree(tmp_path), tmp_path / "cache"
    expected = read(root, cache)
    path = cache_files(cache)[0]
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["pixels"] = arrays["pixels"][:, :16]  # as if written for another image size
    np.savez(path, **arrays)
    decoded.clear()
    assert_same(read(root, cache), expected)
    assert len(decoded) == len(arrays["sizes"])  # that folder's files, and only those


def test_image_size_and_preprocessing_version_are_in_the_key(tmp_path, decoded, monkeypatch):
    folder = str(tmp_path)
    keys = {image_cache.cache_key(folder, 32), image_cache.cache_key(folder, 28)}
    monkeypatch.setattr(image_cache, "PREPROCESS_VERSION", image_cache.PREPROCESS_VERSION + 1)
    keys.add(image_cache.cache_key(folder, 32))
    assert len(keys) == 3
    root, cache = tree(tmp_path), tmp_path / "cache"
    read(root, cache)
    decoded.clear()
    monkeypatch.setattr(image_cache, "PREPROCESS_VERSION", image_cache.PREPROCESS_VERSION + 1)
    read(root, cache)
    assert len(decoded) == 24  # a new load_image: nothing of the old cache is used


@pytest.mark.parametrize("cache", [False, True])
def test_worker_processes_give_what_the_calling_process_gives(tmp_path, cache):
    root = big_tree(tmp_path)
    (root / "kiwi" / "17.png").write_bytes(b"broken")
    cache_dir = tmp_path / "cache" if cache else False
    alone = read(root, cache_dir, workers=1, skip_bad=True)
    shared = read(root, cache_dir, workers=2, skip_bad=True)
    assert alone.loading.processes == 0 and shared.loading.processes == (0 if cache else 2)
    assert alone.loading.failures == shared.loading.failures and shared.skipped == 1
    assert_same(alone, shared)


def test_few_files_are_decoded_in_the_calling_process(tmp_path):
    assert read(tree(tmp_path), False, workers=2).loading.processes == 0


def test_a_worker_that_dies_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "decode_files", die_in_worker)
    with pytest.raises(CnnfruitError) as error:
        read(big_tree(tmp_path), False, workers=2)
    assert str(error.value) == "a process decoding images died (out of memory?); workers=1 decodes in this process"


def test_the_first_unreadable_file_in_order_is_the_one_reported_whatever_the_workers(tmp_path):
    root = class_folders(tmp_path / "fruits", per_class=100)
    for name in ("apple/70.png", "kiwi/3.png", "plum/0.png"):
        (root / name).write_bytes(b"not a png")
    for workers in (1, 2, 3):
        with pytest.raises(CnnfruitError, match="apple/70.png: not an image format"):
            read_image_folder(root, cache_dir=False, workers=workers)


def test_skip_bad_leaves_unreadable_files_out_and_never_caches_them(tmp_path, decoded):
    root, cache = tree(tmp_path), tmp_path / "cache"
    bad = root / "test" / "b" / "401.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    backdate(root)
    dataset = read(root, cache, skip_bad=True)
    assert dataset.skipped == 1 and len(dataset.test) == 5 and dataset.test.labels.tolist() == [0, 0, 1, 2, 2]
    assert str(bad) not in dataset.test.paths
    assert [(path, message) for _, path, message in dataset.loading.failures] == [
        (str(bad), f"cannot read image {bad}: not an image format Pillow can decode")]
    decoded.clear()
    again = read(root, cache, skip_bad=True)
    assert decoded == [str(bad)]  # tried again (it may have been fixed), the others from the cache
    assert_same(again, dataset)


def test_skipping_compacts_each_split_in_place(tmp_path):
    root = backdate(split_folders(tmp_path / "fruits", classes=("a", "b", "c"), per_class=(6, 3)))
    clean = read(root, False)
    for name in ("train/a/500.png", "train/b/503.png", "train/c/505.png", "test/a/400.png"):
        (root / name).write_bytes(b"broken")
    dataset = read(root, False, skip_bad=True)
    keep = [i for i, path in enumerate(clean.train.paths) if not path.endswith(("a/500.png", "b/503.png", "c/505.png"))]
    np.testing.assert_array_equal(dataset.train.images, clean.train.images[keep])
    np.testing.assert_array_equal(dataset.test.images, clean.test.images[1:])
    assert dataset.skipped == 4


def test_cache_off_by_argument_or_environment(tmp_path, monkeypatch):
    root = tree(tmp_path)
    monkeypatch.setenv("CNNFRUIT_CACHE_DIR", str(tmp_path / "from-env"))
    read_image_folder(root)
    assert len(os.listdir(tmp_path / "from-env")) == 9
    assert read_image_folder(root, cache_dir=False).loading.cache_dir is None
    monkeypatch.setenv("CNNFRUIT_CACHE_DIR", "OFF")
    assert read_image_folder(root).loading.cache_dir is None
    assert read_image_folder(root, cache_dir=tmp_path / "arg").loading.cache_dir == str(tmp_path / "arg")


def test_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNFRUIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image_cache.resolve_cache_dir() == str(tmp_path / "xdg" / "cnnfruit")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: only absolute paths count
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert image_cache.resolve_cache_dir() == str(tmp_path / "home" / ".cache" / "cnnfruit")


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path):
    root, blocked = tree(tmp_path), tmp_path / "a-file"
    blocked.write_text("not a folder")
    dataset = read(root, blocked / "cache")
    assert_same(dataset, read(root, False))
    assert dataset.loading.cache_problem.startswith(f"cannot write the image cache in {blocked / 'cache'}: ")


def test_progress_is_reported_from_the_calling_thread_up_to_the_total(tmp_path):
    root, calls = big_tree(tmp_path), []

    def progress(done, total):
        calls.append((done, total, threading.get_ident(), os.getpid()))

    for _ in ("decoded by worker processes", "from the cache"):
        calls.clear()
        read(root, tmp_path / "cache", workers=2, progress=progress)
        assert {(ident, pid) for _, _, ident, pid in calls} == {(threading.get_ident(), os.getpid())}
        assert {total for _, total, _, _ in calls} == {300}
        done = [d for d, _, _, _ in calls]
        assert done == sorted(done) and done[-1] == 300


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_loading_changes_no_global_state(tmp_path):
    import multiprocessing
    import signal

    from PIL import Image

    limit, mask, handler = Image.MAX_IMAGE_PIXELS, current_umask(), signal.getsignal(signal.SIGINT)
    read(big_tree(tmp_path), tmp_path / "cache", workers=2)
    assert Image.MAX_IMAGE_PIXELS == limit and current_umask() == mask and signal.getsignal(signal.SIGINT) is handler
    assert not [t for t in threading.enumerate() if t.name.startswith("cnnfruit-cache")]
    assert not multiprocessing.active_children()
