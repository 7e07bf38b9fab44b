"""A trained network as one ONNX file that any ONNX runtime can run without cnnfruit.

The graph starts from the raw images and does everything `Network.predict_proba(to_inputs(...))`
does, so a consumer cannot forget or get wrong the preprocessing the checkpoint was trained with:

    images uint8 (N, H, H, 3) RGB, as preprocess.load_image makes them
      -> float32 -> grey: pixels @ LUMA_WEIGHTS (N, 1, H, H) | rgb: transpose to (N, 3, H, H)
      -> none | scale: / 255 | standardize: (x - mean) / max(std, 1e-6) per image over C, H, W
      -> each layer's nodes, as its unit writes them (nn/layers/): conv K x S x S (stride 1, its
         padding) + bias, Relu; MaxPool; Flatten (in C, H, W order) before the first dense layer,
         Gemm + Relu ... -> Gemm (the logits) -> Softmax  = probabilities float32 (N, M)
      -> argmax of the probabilities                    = class_index int64 (N,)

N is a dynamic dimension named "batch". The model's metadata_props hold the class names (a JSON
array of strings under "class_names"), "color", "normalize", "image_size", "layers" (the network's
layer spec) and "cnnfruit_version". Initializers carry the checkpoint's parameter names (conv_w,
conv_b, dense0_w, ...) and nodes the names of their layers.

Three things differ from the numba path on purpose:
- standardize sums each image's mean and variance in float64 (see _Graph.image_mean), so the
  result does not depend on a runtime's order of summation and a flat image gives 0; to_inputs
  sums in float32 (same values to 1e-6 on photos, but noise of +-1 on a flat grey image);
- the graph computes in float32 whatever the parameters' dtype;
- its softmax does not flush probabilities below kernels.PROBABILITY_FLOOR (1e-30) to zero:
  that floor only keeps subnormal numbers out of the training gradients, it is not part of what
  the network predicts, and it can never change the arg max.

`onnx` is imported only when a model is built, so cnnfruit itself does not depend on it.
"""
import json
import os

import numpy as np

from cnnfruit.config import COLOR_MODES, NORMALIZE_MODES
from cnnfruit.errors import CnnfruitError
from cnnfruit.files import described, existing_kind, same_file, write_atomically
from cnnfruit.data.preprocess import LUMA_WEIGHTS

INPUT_NAME = "images"
PROBABILITIES_NAME = "probabilities"
CLASS_INDEX_NAME = "class_index"
BATCH_DIM = "batch"

# Opset 17 (ONNX 1.12, 2022), with IR version 8: onnxruntime 1.15.0 (2023) and 1.32.0 run it, and
# so does onnxruntime-web 1.30.0's WebAssembly backend in Node 20; onnxruntime 1.15 refuses opset
# 21's IR version 10. Every operator used here is unchanged since opset 13, the lowest offered.
DEFAULT_OPSET = 17
MIN_OPSET = 13
# From opset 18 on, ReduceMean takes its axes as an input instead of an attribute.
REDUCE_AXES_AS_INPUT = 18

STD_FLOOR = 1e-6  # as in preprocess.to_inputs
# protobuf cannot serialise a message of 2 GiB or more; the weights are nearly all of the file.
MAX_WEIGHT_BYTES = 2**31 - 2**24

INSTALL_HINT = "pip install 'cnnfruit[onnx]'"


def _import_onnx():
    try:
        import onnx
        import onnx.helper
        import onnx.numpy_helper  # older onnx releases do not import it with the package
    except ImportError:
        raise CnnfruitError(f"exporting to ONNX needs the onnx package: {INSTALL_HINT}") from None
    return onnx


# ----------------------------------------------------------------------------------------------
# the public functions


def build_onnx(arch, params, class_names, color, normalize, opset=DEFAULT_OPSET):
    """The network, its preprocessing and its class names as an onnx.ModelProto (nothing written).

    arch: architecture.Architecture; params: the named float arrays of architecture.py;
    class_names: one string per output; color and normalize: the checkpoint's preprocessing.
    """
    from cnnfruit.version import __version__  # here, not at the top: the package's __init__ may import this module

    onnx = _import_onnx()
    _check(onnx, arch, params, class_names, color, normalize, opset)
    graph = _Graph(onnx, opset)
    x = graph.preprocess(INPUT_NAME, color, normalize)
    probabilities = graph.network(x, arch, params)
    graph.node("ArgMax", [probabilities], [CLASS_INDEX_NAME], axis=1, keepdims=0)

    helper, TensorProto = onnx.helper, onnx.TensorProto
    size = arch.image_size
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH_DIM, size, size, 3])]
    outputs = [
        helper.make_tensor_value_info(PROBABILITIES_NAME, TensorProto.FLOAT, [BATCH_DIM, arch.classes]),
        helper.make_tensor_value_info(CLASS_INDEX_NAME, TensorProto.INT64, [BATCH_DIM]),
    ]
    onnx_graph = helper.make_graph(
        graph.nodes, "cnnfruit", inputs, outputs, initializer=graph.initializers,
        doc_string=f"uint8 RGB images (N, {size}, {size}, 3) -> class probabilities and index",
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        onnx_graph,
        opset_imports=opsets,
        # The oldest IR version that holds this opset, not the newest the installed onnx knows:
        # runtimes refuse IR versions newer than their own.
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="cnnfruit",
        producer_version=__version__,
        doc_string="A cnnfruit network; see metadata_props for its class names and preprocessing.",
    )
    helper.set_model_props(model, {
        "class_names": json.dumps(list(class_names)),
        "color": color,
        "normalize": normalize,
        "image_size": str(size),
        "layers": arch.spec,
        "cnnfruit_version": __version__,
    })
    return model


def export_onnx(arch, params, class_names, color, normalize, path, opset=DEFAULT_OPSET):
    """Write the model of build_onnx to path (atomically); returns the onnx.ModelProto.

    An earlier ONNX file at path is replaced; any other file there is refused (check_output)."""
    check_output(path)
    model = build_onnx(arch, params, class_names, color, normalize, opset)
    onnx = _import_onnx()
    try:
        write_atomically(path, lambda temporary: onnx.save_model(model, temporary))
    except OSError as err:
        raise CnnfruitError(f"cannot write {path}: {err.strerror or err}") from None
    return model


def export_checkpoint(model_path, onnx_path, opset=DEFAULT_OPSET):
    """Read a cnnfruit checkpoint (checked as for eval) and write it to onnx_path as ONNX."""
    from cnnfruit import checkpoint

    if same_file(model_path, onnx_path):
        raise CnnfruitError(f"{onnx_path} is the checkpoint being exported; write the ONNX file to another name, "
                            f"such as {_onnx_name(model_path)}")
    check_output(onnx_path)
    ckpt = checkpoint.load(model_path)
    return export_onnx(ckpt.arch, ckpt.params, ckpt.class_names, ckpt.color, ckpt.normalize, onnx_path, opset)


def check_output(path):
    """Refuse to write over anything but an earlier ONNX file: a checkpoint, a history or a photo
    named by mistake would be lost. An ONNX model starts with its ir_version field (byte 0x08)."""
    kind = existing_kind(path)
    if kind is None:
        return
    if kind != "file":
        raise CnnfruitError(f"cannot write {path}: {described(kind)}; give a file name{_such_as(path)}")
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError as err:
        raise CnnfruitError(f"cannot read {path}: {err.strerror or err}") from None
    if head not in (b"", b"\x08"):
        raise CnnfruitError(f"{path} exists and is not an ONNX file; export replaces only an earlier export, so "
                            f"give another name{_such_as(path)}")


def _onnx_name(path):
    stem = os.path.splitext(os.path.basename(os.path.normpath(str(path))))[0] or "model"
    return os.path.join(os.path.dirname(str(path)), f"{stem}.onnx")


def _such_as(path):
    name = _onnx_name(path)
    return f", such as {name}" if name != str(path) else ""


def _check(onnx, arch, params, class_names, color, normalize, opset):
    if color not in COLOR_MODES:
        raise CnnfruitError(f"unknown color mode {color!r}; choose from {', '.join(COLOR_MODES)}")
    if normalize not in NORMALIZE_MODES:
        raise CnnfruitError(f"unknown normalization {normalize!r}; choose from {', '.join(NORMALIZE_MODES)}")
    channels = 1 if color == "grey" else 3
    if arch.in_channels != channels:
        raise CnnfruitError(f"color {color!r} gives {channels} input channel(s), the network has {arch.in_channels}")
    if len(class_names) != arch.classes or not all(isinstance(name, str) for name in class_names):
        raise CnnfruitError(f"class_names must be {arch.classes} strings, one per output, got {list(class_names)!r}")
    shapes = arch.parameter_shapes()
    if set(params) != set(shapes):
        raise CnnfruitError(f"params must hold exactly {', '.join(shapes)}; got {', '.join(params)}")
    for name, shape in shapes.items():
        value = np.asarray(params[name])
        if value.shape != shape or value.dtype.kind != "f":
            raise CnnfruitError(f"params[{name!r}] must be floats of shape {shape}, got {value.dtype} {value.shape}")
    weight_bytes = 4 * sum(int(np.prod(shape)) for shape in shapes.values())
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise CnnfruitError(
            f"the network's {weight_bytes / 2**30:.1f} GiB of float32 weights do not fit in one ONNX file "
            "(protobuf's 2 GiB limit); use smaller hidden layers"
        )
    newest = onnx.defs.onnx_opset_version()
    if not (isinstance(opset, int) and MIN_OPSET <= opset <= newest):
        raise CnnfruitError(f"opset must be an integer from {MIN_OPSET} to {newest} (this onnx's newest), got {opset!r}")


# ----------------------------------------------------------------------------------------------
# the graph, node by node


class _Graph:
    """Nodes and initializers appended in order; each method returns the name of its output."""

    def __init__(self, onnx, opset):
        self.onnx = onnx
        self.opset = opset
        self.nodes = []
        self.initializers = []

    def node(self, op, inputs, outputs, **attributes):
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, name=outputs[0], **attributes))
        return outputs[0]

    def constant(self, name, value, dtype=np.float32):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def image_mean(self, x, out):
        """Mean of each image (N, C, H, H) over C, H, H -> (N, 1, 1, 1), summed in float64.

        A float64 sum of 32 x 32 x 3 float32 pixels is exact whatever the order of summation, so
        every runtime gives the same mean and a flat image centres to exactly 0 (a float32 sum
        leaves a residue near 1e-5 that depends on the runtime and passes the 1e-6 std floor).
        """
        wide = self.node("Cast", [x], [f"{out}_float64_in"], to=self.onnx.TensorProto.DOUBLE)
        axes = [1, 2, 3]
        if self.opset >= REDUCE_AXES_AS_INPUT:
            axes_input = self.constant(f"{out}_axes", axes, np.int64)
            mean = self.node("ReduceMean", [wide, axes_input], [f"{out}_float64"], keepdims=1)
        else:
            mean = self.node("ReduceMean", [wide], [f"{out}_float64"], axes=axes, keepdims=1)
        return self.node("Cast", [mean], [out], to=self.onnx.TensorProto.FLOAT)

    def preprocess(self, images, color, normalize):
        """uint8 (N, H, H, 3) -> float32 (N, C, H, H), exactly as preprocess.to_inputs."""
        pixels = self.node("Cast", [images], ["pixels"], to=self.onnx.TensorProto.FLOAT)
        if color == "grey":
            # (N, H, H, 3) @ (3, 1) -> (N, H, H, 1): the luma of each pixel, in to_inputs' float32.
            luma = self.constant("luma_weights", LUMA_WEIGHTS.reshape(3, 1))
            pixels = self.node("MatMul", [pixels, luma], ["luma"])
        x = self.node("Transpose", [pixels], ["inputs_raw"], perm=[0, 3, 1, 2])
        if normalize == "scale":
            x = self.node("Div", [x, self.constant("pixel_range", 255.0)], ["inputs"])
        elif normalize == "standardize":
            # numpy's std: the square root of the mean squared deviation (population, ddof 0).
            centred = self.node("Sub", [x, self.image_mean(x, "image_mean")], ["centred"])
            squared = self.node("Mul", [centred, centred], ["squared_deviation"])
            std = self.node("Sqrt", [self.image_mean(squared, "image_variance")], ["image_std"])
            floored = self.node("Max", [std, self.constant("std_floor", STD_FLOOR)], ["image_std_floored"])
            x = self.node("Div", [centred, floored], ["inputs"])
        return x

    def network(self, x, arch, params):
        """inputs (N, C, H, H) -> softmax probabilities (N, M), layer by layer as network.Network."""
        h = x
        for unit in arch.units():
            weights = {local: self.constant(f"{unit.name}_{local}", params[f"{unit.name}_{local}"])
                       for local in unit.parameter_shapes()}
            h = unit.onnx(self, h, weights)
        return self.node("Softmax", [h], [PROBABILITIES_NAME], axis=1)
