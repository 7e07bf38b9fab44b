"""`cnnfruit eval`: accuracy, per-class precision and recall, the confusion matrix, the worst mistakes."""
import json
import os

import click

from cnnfruit.cli.options import TTA_HELP, check_figure_path, computing, report_loading, write_figure
from cnnfruit.cli.terminal import print_report
from cnnfruit.config import TTA_MODES

@click.command(name="eval")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data_folder", type=click.Path(file_okay=False), default=None,
              help="Image folder (train/ and test/). Default: the images MODEL was trained on (its recorded "
                   "folder, or the embedded fruit photos).")
@click.option("--split", type=click.Choice(["test", "train", "val"]), default="test", show_default=True,
              help="Which images to score; train and val repeat the training run's seeded split.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the confusion matrix as a heat map into this file (.png, .jpg, .svg or .pdf).")
@click.option("--misclassified", "gallery_path", type=click.Path(dir_okay=False), default=None,
              help="Also draw the --top most confident mistakes, with their files, into this file.")
@click.option("--top", type=click.IntRange(min=1), default=16, show_default=True,
              help="How many mistakes --misclassified draws and --json lists.")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
def evaluate(model, data_folder, split, as_json, plot_path, gallery_path, top, tta):
    """Accuracy, per-class precision and recall, and the confusion matrix of MODEL."""
    check_figure_path(plot_path)
    check_figure_path(gallery_path)
    computing()
    from cnnfruit.inference.classifier import Classifier
    from cnnfruit.inference.mistakes import confident_mistakes

    clf = Classifier.load(model)
    dataset = clf.training_data(data_folder)  # with the options it was read with then (a test share, say)
    if dataset.source is not None:
        report_loading(dataset)
    images = clf.split(split, dataset)
    evaluation = clf.evaluate(images, tta=tta)
    mistakes = confident_mistakes(evaluation, images, top)
    report = {"model": model, "split": split, "tta": tta, **evaluation.report(),
              "mistakes": [m.to_dict() for m in mistakes]}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    if gallery_path:
        from cnnfruit.plots import mistakes_figure

        wrong = int((evaluation.predictions != evaluation.labels).sum())
        fig = mistakes_figure(images.images, mistakes, title=(
            f"{os.path.basename(model)} on the {split} split: the {len(mistakes)} most confident of {wrong} mistakes"
            + (f" (tta {tta})" if tta != "none" else "")))
        click.echo(f"Wrote {write_figure(fig, gallery_path)}", err=as_json)
    if plot_path:
        from cnnfruit.plots import confusion_figure

        fig = confusion_figure(report["confusion_matrix"], clf.class_names,
                               title=f"{os.path.basename(model)} on the {split} split")
        click.echo(f"Wrote {write_figure(fig, plot_path)}", err=as_json)
