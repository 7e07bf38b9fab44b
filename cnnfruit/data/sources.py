"""Where a dataset comes from and how it is read, as one value: the --data options of the commands,
a resumed run, a classifier's training images and a sweep all turn it into a Dataset by `load`.

    source = DataSource("photos/", skip_bad=True)
    dataset = source.load()

A model records its source (Checkpoint.trained_on: the folder, a digest of the images and the
options that shape them); `DataSource.recorded` reads that record back, so that a resumed run or
an evaluation of the train split reads the images exactly as the run did.
"""
import os
from dataclasses import dataclass, fields

from cnnfruit.data.datasets import TEST_FRACTION, fingerprint, load_embedded, read_image_folder
from cnnfruit.errors import CnnfruitError, SettingError

# The options a checkpoint records: they decide which images land in which split. cache_dir only
# decides where decoded images are kept, so it is left out.
SHAPING_OPTIONS = ("skip_bad", "test_fraction", "seed")


@dataclass(frozen=True)
class DataSource:
    """An image folder and how to read it, or (folder None) the embedded fruit photos.

    skip_bad: leave out unreadable images instead of stopping. test_fraction and seed: the test
    cut of a folder of class folders alone. cache_dir: where decoded images are kept between
    loads (None: the default cache, False: none). See read_image_folder.
    """

    folder: str = None
    skip_bad: bool = False
    test_fraction: float = TEST_FRACTION
    seed: int = 0
    cache_dir: object = None

    def load(self, progress=None):
        """The Dataset; progress(done, total) is called now and then while a folder is read."""
        if self.folder is None:
            return load_embedded()
        return read_image_folder(self.folder, skip_bad=self.skip_bad, test_fraction=self.test_fraction, seed=self.seed,
                                 cache_dir=self.cache_dir, progress=progress)

    @property
    def name(self):
        """"embedded", or the folder's absolute path."""
        return "embedded" if self.folder is None else os.path.abspath(self.folder)

    def options(self):
        """The options that shape the dataset (what a checkpoint records beside the folder)."""
        return {name: getattr(self, name) for name in SHAPING_OPTIONS}

    @classmethod
    def of(cls, dataset):
        """The source a Dataset was read from (the embedded photos for one made in memory)."""
        return cls(dataset.source, **dataset.options)

    @classmethod
    def recorded(cls, trained_on, model, folder=None, skip_bad=None):
        """The source a model records (Checkpoint.trained_on), to be read the way it was read then.

        folder: read this folder instead (the training images moved, say); skip_bad: this instead
        of the recorded choice. A SettingError naming {data} when the recorded folder is gone.
        """
        options = {key: value for key, value in trained_on.items() if key not in ("source", "digest")}
        if skip_bad is not None:
            options["skip_bad"] = skip_bad
        source = os.fspath(folder) if folder else trained_on.get("source")
        if not folder and source is not None and not os.path.isdir(source):
            raise SettingError("the data folder {source} that {model} was trained on is gone; pass {data}",
                               source=source, model=model)
        return cls(source, **options)


def accepted_options():
    """The names a recorded source may hold beside its folder and digest."""
    return tuple(f.name for f in fields(DataSource) if f.name != "folder")


def check_classes(dataset, class_names, model):
    """The dataset has the model's classes, in its order."""
    if list(dataset.class_names) != list(class_names):
        raise CnnfruitError(f"the data's classes ({', '.join(dataset.class_names)}) differ from those of {model} "
                            f"({', '.join(class_names)})")


def same_images(dataset, trained_on):
    """Whether dataset holds the images a model records it was trained on (True when it records no digest)."""
    return trained_on.get("digest") in (None, fingerprint(dataset))
