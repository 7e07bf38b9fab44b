"""`cnnfruit explain`: saliency and occlusion maps of one photo, drawn over it."""
import json
import os

import click

from cnnfruit.cli.options import check_figure_path, computing, write_figure


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="PNG file to write. Default: IMAGE's name with -explained.png, in the current folder.")
@click.option("--class", "class_name", default=None, help="Explain this class instead of the predicted one.")
@click.option("--score", type=click.Choice(["logit", "log-probability"]), default="logit", show_default=True,
              help="What the saliency is the gradient of (the logit: see docs/insight.md).")
@click.option("--patch", type=int, default=8, show_default=True, help="Side of the occluding square, in input pixels.")
@click.option("--stride", type=int, default=2, show_default=True, help="Step between occluding squares.")
@click.option("--json", "as_json", is_flag=True, help="Also print the maps as JSON.")
def explain(model, image, output, class_name, score, patch, stride, as_json):
    """Draw which pixels of IMAGE made MODEL answer as it did: input-gradient saliency and occlusion.

    The saliency map is |d class score / d pixel|, the occlusion map how far the class's
    probability falls when a square around each pixel is covered with the photo's mean colour.
    """
    import numpy as np
    from PIL import Image, ImageOps

    from cnnfruit.inference.classifier import Classifier
    from cnnfruit.errors import CnnfruitError
    from cnnfruit.inference.explain import explain as explain_photo
    from cnnfruit.plots import explanation_figure

    # here, not beside IMAGE: a photo's folder may be a shared or read-only data set
    output = output or os.path.splitext(os.path.basename(image))[0] + "-explained.png"
    check_figure_path(output, model, image)
    computing()
    clf = Classifier.load(model)
    explanation = explain_photo(clf, image, class_name, score, patch, stride)
    try:
        with Image.open(image) as opened:
            photo = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    except (OSError, ValueError) as err:
        raise CnnfruitError(f"cannot read image {image}: {err}") from None
    fig = explanation_figure(explanation, photo, title=(
        f"{os.path.basename(image)}: why {explanation.class_name} (p = {explanation.probability:.3f})"))
    e = explanation
    peak = np.unravel_index(np.argmax(e.occlusion), e.occlusion.shape)
    if as_json:
        click.echo(json.dumps({
            "image": image, "predicted": e.predicted, "confidence": e.confidence, "class": e.class_name,
            "probability": e.probability, "score": e.score, "saliency": e.saliency.tolist(),
            "occlusion": e.occlusion.tolist(), "patch": e.patch, "stride": e.stride}, indent=2))
    else:
        click.echo(f"{image}: predicted {e.predicted} ({100 * e.confidence:.1f}%); explaining {e.class_name} "
                   f"(p = {e.probability:.4f})")
        click.echo(f"Saliency: |d {e.score}({e.class_name}) / d pixel|, largest {e.saliency.max():.3g} per unit of "
                   f"pixel value (0..255)")
        click.echo(f"Occlusion: covering the {patch}x{patch} squares around row {peak[0]}, column {peak[1]} lowers "
                   f"p({e.class_name}) the most, by {e.occlusion.max():.3f} on average")
    click.echo(f"Wrote {write_figure(fig, output)}", err=as_json)
