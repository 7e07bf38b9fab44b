"""`cnnfruit export`: a checkpoint as one ONNX file, preprocessing included."""
import os

import click


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--opset", type=int, default=None, help="ONNX operator set version (default 17).")
def export(model, output, opset):
    """Write MODEL (a .npz checkpoint) to OUTPUT as ONNX, for runtimes without cnnfruit.

    The file takes uint8 RGB images (N, 32, 32, 3) and applies the model's own colour mode and
    normalisation; it outputs class probabilities and the class index, with the class names in
    its metadata. Needs the onnx extra: pip install 'cnnfruit[onnx]'.
    """
    from cnnfruit.inference.onnx_export import CLASS_INDEX_NAME, DEFAULT_OPSET, INPUT_NAME, PROBABILITIES_NAME, export_checkpoint

    opset = opset or DEFAULT_OPSET
    metadata = {p.key: p.value for p in export_checkpoint(model, output, opset).metadata_props}
    size = metadata["image_size"]
    click.echo(f"Wrote {output} ({os.path.getsize(output):,} bytes, opset {opset})")
    click.echo(f"Input {INPUT_NAME}: uint8 (N, {size}, {size}, 3) RGB; outputs {PROBABILITIES_NAME} (N, classes) and "
               f"{CLASS_INDEX_NAME} (N,); classes {metadata['class_names']}")
