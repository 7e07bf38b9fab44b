"""Search spaces from text and from Python values; Spearman's rho for the sweep report."""
import numpy as np
import pytest

from cnnfruit.errors import SettingError
from cnnfruit.sweep.space import Choice, Range, SearchSpace
from cnnfruit.sweep.report import ranks, spearman


def test_text_and_values_make_the_same_space():
    text = SearchSpace.from_text({"lr": "1e-5,1e-4,1e-3", "kernels": "4:16", "kernel_size": "5",
                                  "hidden": ["841,29", "256"], "optimizer": "sgd,adam"})
    values = SearchSpace.from_values(lr=[1e-5, 1e-4, 1e-3], kernels=Range(4, 16), kernel_size=5,
                                     hidden=[(841, 29), (256,)], optimizer=["sgd", "adam"])
    assert text.to_dict() == values.to_dict()
    assert text.names == ["lr", "kernels", "hidden", "optimizer"]
    assert text.searched["hidden"] == Choice(((841, 29), (256,)))
    assert text.fixed == {"kernel_size": 5}
    assert not text.is_grid


def test_a_log_range_and_a_grid():
    space = SearchSpace.from_text({"lr": "1e-5:1e-2:log"})
    assert space.searched["lr"] == Range(1e-5, 1e-2, log=True)
    grid = SearchSpace.from_text({"lr": "1e-4,1e-3", "kernels": "2,3"})
    assert grid.is_grid and grid.grid_size == 4
    config = grid.config({"lr": 1e-3, "kernels": 3}, seed=7)
    assert (config.lr, config.kernels, config.seed) == (1e-3, 3, 7)


def test_one_hidden_layout_is_fixed_and_round_trips():
    space = SearchSpace.from_text({"hidden": ["8"], "lr": "1e-3,1e-2"})
    assert space.fixed["hidden"] == [8]
    assert SearchSpace.from_dict(space.to_dict()).to_dict() == space.to_dict()


def test_layer_specs_are_searched_as_a_list_or_separated_by_semicolons():
    specs = ["conv4x3, dense8", "conv4x3 same, maxpool2, dense8"]
    by_text = SearchSpace.from_text({"layers": "Conv4x3,dense8 ; conv4x3 same,maxpool2,dense8", "color": "rgb"})
    by_flags = SearchSpace.from_text({"layers": specs, "color": "rgb"})
    by_values = SearchSpace.from_values(layers=specs, color="rgb")
    assert by_text.to_dict() == by_flags.to_dict() == by_values.to_dict()
    assert by_text.searched["layers"] == Choice(tuple(specs))
    assert by_text.describe("layers") == "conv4x3, dense8; conv4x3 same, maxpool2, dense8"
    assert SearchSpace.from_dict(by_text.to_dict()).to_dict() == by_text.to_dict()
    assert by_text.config({"layers": specs[1]}, seed=1).layers == specs[1]
    assert SearchSpace.from_text({"layers": specs[:1], "lr": "1e-3,1e-2"}).fixed["layers"] == specs[0]


@pytest.mark.parametrize("settings, message", [
    ({"layers": "conv4x3, dense8; conv4x4, maxpool2"},
     "layers: layer 2 maxpool2 cannot pool the 4x29x29 maps of layer 1 (conv4x4): 2 does not divide 29"),
    ({"layers": "conv4x3; dense8x"}, "layers: layer 1 'dense8x' is not a dense layer"),
    ({"layers": "conv4x3; dense8", "kernels": "2,4"}, "give the network as layers or by its shorthands (kernels)"),
    ({"lr": "1e-5,abc"}, "lr 'abc' in '1e-5,abc' is not a number"),
    ({"kernels": "4:x"}, "kernels 'x' in '4:x' is not a whole number"),
    ({"lr": "1e-2:1e-5"}, "lr range 0.01:1e-05 must go from low to high"),
    ({"lr": "0:1:log"}, "lr must be a positive number, got 0"),
    ({"lr": "1e-3:1:lin"}, "lr range '1e-3:1:lin' must be low:high or low:high:log"),
    ({"optimizer": "sgd,nadam"}, "optimizer must be one of sgd, momentum, adam, got 'nadam'"),
    ({"optimizer": "sgd:adam"}, "optimizer takes no range, only a list of values"),
    ({"kernel_size": "4,40"}, "kernel_size 40 does not fit the 32x32 images"),
    ({"hidden": ["8", "x"]}, "hidden 'x' is not a comma-separated list of layer sizes"),
    ({"seed": "1,2"}, "a sweep sets seed itself"),
    ({"lr": "1e-3,1e-3"}, "lr lists a value twice"),
    # braces are the user's text, never part of the message's template
    ({"lr": "1,{0}"}, "lr '{0}' in '1,{0}' is not a number"),
    ({"lr": "1e-3:{"}, "lr '{' in '1e-3:{' is not a number"),
    ({"kernels": "a}b"}, "kernels 'a}b' in 'a}b' is not a whole number"),
    ({"lr": "{lr}"}, "lr '{lr}' in '{lr}' is not a number"),
])
def test_bad_text_names_the_setting(settings, message):
    with pytest.raises(SettingError) as err:
        SearchSpace.from_text(settings)
    assert message in str(err.value)


def test_the_command_line_names_flags():
    with pytest.raises(SettingError) as err:
        SearchSpace.from_text({"kernel_size": "4,40"})
    assert err.value.render(lambda name: "--" + name.replace("_", "-")).startswith("--kernel-size 40")


# ---- ranks


def test_spearman_with_ties_matches_a_hand_computed_value():
    assert ranks([0.9, 1.0, 1.0, 0.5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 2, 3, 4 -> Pearson of the ranks, by hand: 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_the_report_measures_how_validation_ranks_like_the_test():
    from cnnfruit.config import TrainConfig
    from cnnfruit.sweep.report import SweepReport, run_record

    space = SearchSpace.from_values(lr=[1e-3, 1e-2, 1e-1], val_split=["random", "block"])
    records, number = [], 0
    # block: validation follows the test; random: every run scores 1.0 (no ranking possible)
    for split, scores in (("block", {1e-3: (0.9, 0.8), 1e-2: (0.95, 0.85), 1e-1: (0.7, 0.6)}),
                          ("random", {1e-3: (1.0, 0.8), 1e-2: (1.0, 0.85), 1e-1: (1.0, 0.6)})):
        for lr, (val, test) in scores.items():
            for seed in (0, 1):
                attrs = {"seed": seed, "outcome": "finished", "val_accuracy": val, "test_accuracy": test,
                         "best_val_loss": 1 - val, "seconds": 1.0, "folder": f"runs/trial-{number:04d}"}
                records.append(run_record(number, {"lr": lr, "val_split": split}, attrs,
                                          TrainConfig(lr=lr, val_split=split)))
                number += 1
    report = SweepReport.build(space, (0, 1), records)
    assert [(row["params"]["lr"], row["val_split"]) for row in report.rows[:3]] == [
        (1e-3, "random"), (1e-2, "random"), (1e-1, "random")]  # 100% first; ties by loss (all 0)
    block = report.validation_vs_test["block"]
    assert block["spearman"] == pytest.approx(1.0) and block["spearman_by_setting"] == pytest.approx(1.0)
    assert block["runs"] == 6 and block["settings"] == 3
    random = report.validation_vs_test["random"]
    assert random["spearman"] is None and random["spearman_by_setting"] is None  # all tied: no order
    assert "1.0" not in report.to_csv().splitlines()[0] and len(report.to_csv().splitlines()) == 7


def test_class_weights_of_numbers_are_one_setting_and_words_are_choices():
    space = SearchSpace.from_text({"class_weights": "1,2.5,1"})
    assert space.fixed == {"class_weights": "1.0,2.5,1.0"} and not space.searched
    space = SearchSpace.from_text({"class_weights": "none,auto", "lr_schedule": "constant,cosine"})
    assert space.searched == {"class_weights": Choice(("none", "auto")), "lr_schedule": Choice(("constant", "cosine"))}
