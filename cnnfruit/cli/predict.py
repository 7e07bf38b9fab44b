"""`cnnfruit predict`: the class of each photo, with its probabilities; unreadable files reported."""
import json

import click

from cnnfruit.cli.options import TTA_HELP, computing
from cnnfruit.config import TTA_MODES
from cnnfruit.errors import CnnfruitError


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Answer `unsure` (JSON: \"class\": null) when the top probability is below this.")
@click.option("--tta", type=click.Choice(TTA_MODES), default="none", show_default=True, help=TTA_HELP)
@click.option("--skip-bad", is_flag=True, help="Exit 0 when some images cannot be read (they are still reported).")
def predict(model, images, as_json, min_confidence, tta, skip_bad):
    """Classify each IMAGE with MODEL: predicted class and class probabilities.

    An image that cannot be read is reported (on stderr, or as an "error" entry with --json) and
    the others are still predicted; the exit status is then 1, unless --skip-bad.
    """
    computing()
    from cnnfruit.inference.classifier import Classifier

    clf = Classifier.load(model)
    results = clf.predict_files(list(images), tta=tta)
    failed = [r for r in results if r.error is not None]
    readable = [r for r in results if r.error is None]
    answers = dict(zip(map(id, readable), clf.decide([r.probabilities for r in readable], min_confidence)
                       if readable else []))
    if as_json:
        click.echo(json.dumps([
            {"file": r.path, "error": r.error} if r.error is not None else
            {"file": r.path, "class": answers[id(r)],
             "probabilities": {name: float(value) for name, value in zip(clf.class_names, r.probabilities)}}
            for r in results
        ], indent=2))
    else:
        width = max(len(path) for path in images)
        answer_width = max(len("unsure"), *map(len, clf.class_names))
        for r in results:
            if r.error is not None:
                click.echo(r.error, err=True)
                continue
            odds = "  ".join(f"{name} {value:.3f}" for name, value in zip(clf.class_names, r.probabilities))
            click.echo(f"{r.path:<{width}}  {answers[id(r)] or 'unsure':<{answer_width}}  {odds}")
    if len(failed) == len(results):
        raise CnnfruitError(f"none of the {len(results)} images could be read")
    if failed and not skip_bad:
        raise CnnfruitError(f"{len(failed)} of {len(results)} images could not be read (--skip-bad predicts the "
                            "others without this error)")
    if failed:
        click.echo(f"Skipped {len(failed)} unreadable image(s)", err=True)
