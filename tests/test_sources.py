"""DataSource: where a dataset comes from, read the same way by the commands, fit/resume, Classifier and Sweep."""
import pytest

import cnnfruit
from cnnfruit.data.sources import DataSource, check_classes, same_images
from cnnfruit.errors import CnnfruitError, SettingError

from helpers import TINY_SETTINGS


def test_a_source_reads_a_folder_as_read_image_folder_does(image_folder):
    source = DataSource(str(image_folder), test_fraction=0.3)
    dataset = source.load()
    direct = cnnfruit.read_image_folder(image_folder, test_fraction=0.3)
    assert dataset.class_names == direct.class_names and (dataset.train.images == direct.train.images).all()
    assert DataSource.of(dataset) == DataSource(str(image_folder), test_fraction=0.3)  # never where the cache is
    assert source.name == str(image_folder) and DataSource().name == "embedded"


def test_no_folder_is_the_embedded_photos():
    assert DataSource().load().name == cnnfruit.load_embedded().name


def test_a_recorded_source_reads_the_way_it_was_read(image_folder, tmp_path):
    record = {"source": str(tmp_path / "gone"), "digest": None, "skip_bad": True, "test_fraction": 0.3, "seed": 0}
    with pytest.raises(SettingError, match="was trained on is gone"):
        DataSource.recorded(record, "model.npz")
    moved = DataSource.recorded(record, "model.npz", folder=image_folder, skip_bad=False)
    assert moved == DataSource(str(image_folder), skip_bad=False, test_fraction=0.3)
    assert DataSource.recorded({}, "model.npz") == DataSource()


def test_classes_and_images_are_checked_against_the_record(synthetic_dataset):
    check_classes(synthetic_dataset, ["a", "b", "c"], "m.npz")
    with pytest.raises(CnnfruitError, match=r"differ from those of m.npz \(a, c, b\)"):
        check_classes(synthetic_dataset, ["a", "c", "b"], "m.npz")
    assert same_images(synthetic_dataset, {}) and not same_images(synthetic_dataset, {"digest": "0" * 64})


def test_resume_takes_a_source_or_a_folder_given_as_data(tmp_path, image_folder):
    config = cnnfruit.TrainConfig(epochs=1, **TINY_SETTINGS)
    first = cnnfruit.fit(cnnfruit.read_image_folder(image_folder), config, out=tmp_path / "a")
    by_source = cnnfruit.resume(first.model_path, epochs=2, source=DataSource(str(image_folder)), out=tmp_path / "b")
    by_folder = cnnfruit.resume(first.model_path, epochs=2, data=str(image_folder), out=tmp_path / "c")
    assert by_source.history.epochs[1].train_loss == by_folder.history.epochs[1].train_loss


def test_a_classifier_takes_trained_on_also_as_data(synthetic_dataset):
    result = cnnfruit.fit(synthetic_dataset, cnnfruit.TrainConfig(epochs=1, **TINY_SETTINGS))
    clf = result.classifier
    again = cnnfruit.Classifier(clf.arch, clf.params, clf.class_names, data={"source": None})
    assert again.trained_on == {"source": None}
