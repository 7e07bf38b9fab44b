"""The ONNX export predicts what cnnfruit predicts, from the raw uint8 images.

Every case runs the exported file in ONNX Runtime and compares it with cnnfruit's own forward pass
on the same images: the embedded test split, image files made here and read through load_image,
and the raw Fruits-360 photos when they sit beside the checkout.
"""
import dataclasses
import io
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnfruit  # noqa: E402
from cnnfruit import Architecture, Classifier, CnnfruitError, TrainConfig, __version__, load_embedded  # noqa: E402
from cnnfruit import checkpoint
from cnnfruit.inference import onnx_export  # noqa: E402
from cnnfruit.nn.architecture import init_parameters  # noqa: E402
from cnnfruit.nn.network import Network  # noqa: E402
from cnnfruit.inference.onnx_export import (  # noqa: E402
    CLASS_INDEX_NAME, DEFAULT_OPSET, INPUT_NAME, MIN_OPSET, PROBABILITIES_NAME, REDUCE_AXES_AS_INPUT,
    build_onnx, export_checkpoint, export_onnx,
)
from cnnfruit.data.preprocess import load_image, to_inputs  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_PHOTOS = os.path.join(REPO, "..", "shared", "fruits-360")

TOLERANCE = 1e-5  # on probabilities, absolute


# ----------------------------------------------------------------------------------------------
# the networks compared: every colour and normalisation, four architectures, trained and random


@dataclass(frozen=True)
class Case:
    name: str
    color: str
    normalize: str
    kernels: int = 8
    kernel_size: int = 4
    hidden: tuple = (841, 29)
    trained: bool = False  # one epoch of cnnfruit.fit; else He weights and random biases
    seed: int = 0
    layers: str = ""  # a layer spec instead of kernels, kernel_size and hidden


# Random He networks often send every fruit photo to one class; these seeds give networks that
# predict several classes (test_every_case_predicts_several_classes keeps them honest).
CASES = [
    Case("grey-none-default-he", "grey", "none", seed=1),
    Case("rgb-none-4x3-64-32-trained", "rgb", "none", 4, 3, (64, 32), trained=True),
    Case("grey-scale-4x3-64-he", "grey", "scale", 4, 3, (64,), seed=2),
    Case("rgb-scale-4x3-64-he", "rgb", "scale", 4, 3, (64,), seed=3),
    Case("grey-standardize-4x3-64-32-trained", "grey", "standardize", 4, 3, (64, 32), trained=True),
    Case("rgb-standardize-6x5-32-trained", "rgb", "standardize", 6, 5, (32,), trained=True),
    Case("rgb-standardize-stack-trained", "rgb", "standardize", trained=True,
         layers="conv8x3 same, conv8x3 same, maxpool2, conv12x3 same, maxpool2, dense32"),
    Case("grey-scale-stack-he", "grey", "scale", seed=4, layers="conv6x4 same, maxpool2, conv8x3, maxpool2, conv8x2, dense16"),
]


@dataclass
class Exported:
    case: Case
    arch: Architecture
    params: dict
    class_names: list
    model: object  # onnx.ModelProto
    session: object  # onnxruntime.InferenceSession


def session_of(model_or_path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine's two cores are shared; one thread is enough
    source = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def network_for(case, dataset):
    if case.trained:
        # Raw pixels need the report's small steps; normalised inputs train fast with Adam.
        settings = dict(optimizer="sgd", lr=1e-6) if case.normalize == "none" else dict(optimizer="adam", lr=1e-3)
        shape = dict(layers=case.layers) if case.layers else dict(kernels=case.kernels, kernel_size=case.kernel_size,
                                                                                hidden=case.hidden)
        config = TrainConfig(epochs=1, batch_size=32, val_fraction=0.0, color=case.color, normalize=case.normalize,
                             seed=case.seed, **shape, **settings)
        # A third of the training photos: enough to discriminate, and a third of the steps.
        subset = dataclasses.replace(dataset, train=dataset.train.subset(np.arange(0, len(dataset.train), 3)))
        trained = cnnfruit.fit(subset, config).classifier
        return trained.arch, trained.params
    shape = dict(layers=case.layers) if case.layers else dict(kernels=case.kernels, kernel_size=case.kernel_size,
                                                                            hidden=case.hidden)
    arch = Architecture(in_channels=1 if case.color == "grey" else 3, classes=len(dataset.class_names), **shape)
    rng = np.random.default_rng(case.seed)
    params = init_parameters(arch, rng)
    for name in params:
        if name.endswith("_b"):
            params[name] = rng.normal(0.0, 0.1, params[name].shape).astype(np.float32)
    return arch, params


@pytest.fixture(scope="module")
def embedded():
    return load_embedded()


@pytest.fixture(scope="module")
def exported(embedded):
    models = {}
    for case in CASES:
        arch, params = network_for(case, embedded)
        model = build_onnx(arch, params, embedded.class_names, case.color, case.normalize)
        models[case.name] = Exported(case, arch, params, list(embedded.class_names), model, session_of(model))
    return models


# ----------------------------------------------------------------------------------------------
# the comparison


def classifier(exp, params=None):
    return Classifier(exp.arch, exp.params if params is None else params, exp.class_names, exp.case.color,
                      exp.case.normalize)


def cnnfruit_proba(exp, images):
    """cnnfruit's own prediction for uint8 images."""
    return classifier(exp).predict_proba(images)


def float64_proba(exp, images):
    """The same network in float64 on the same float32 inputs: near exact arithmetic."""
    return classifier(exp, {name: value.astype(np.float64) for name, value in exp.params.items()}).predict_proba(images)


def assert_agrees(exp, images):
    """ONNX Runtime's outputs against cnnfruit's; returns the largest probability difference."""
    probabilities, classes = exp.session.run([PROBABILITIES_NAME, CLASS_INDEX_NAME], {INPUT_NAME: images})
    expected = cnnfruit_proba(exp, images)
    assert probabilities.dtype == np.float32 and probabilities.shape == expected.shape
    assert classes.dtype == np.int64 and classes.shape == (len(images),)
    np.testing.assert_array_equal(classes, expected.argmax(axis=1))
    difference = float(np.abs(probabilities - expected).max())
    if exp.case.normalize == "none":
        # Raw 0..255 pixels give logits in the hundreds, whose float32 rounding alone moves a
        # probability near 0.5 by more than 1e-5, in cnnfruit as in any runtime. There the test
        # asks that the export be about as close to float64 arithmetic as cnnfruit itself is.
        exact = float64_proba(exp, images)
        own_error = float(np.abs(expected - exact).max())
        export_error = float(np.abs(probabilities - exact).max())
        assert export_error <= TOLERANCE + 3 * own_error, (exp.case.name, export_error, own_error)
    else:
        assert difference <= TOLERANCE, (exp.case.name, difference)
    return difference


def generated_image_files(folder, embedded):
    """Image files of several formats, modes and sizes; some are enlarged embedded photos."""
    rng = np.random.default_rng(7)
    files = []

    def save(name, image):
        path = os.path.join(folder, name)
        image.save(path)
        files.append(path)

    for k, index in enumerate((0, 170, 340, 495)):  # one or two of each fruit, 3x larger
        photo = Image.fromarray(embedded.test.images[index]).resize((96, 96), Image.Resampling.NEAREST)
        save(f"fruit{k}.png" if k % 2 else f"fruit{k}.jpg", photo)
    save("noise.jpg", Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)))
    ramp = np.linspace(0, 255, 57 * 41 * 3).reshape(41, 57, 3).astype(np.uint8)
    save("ramp-57x41.png", Image.fromarray(ramp))
    save("grey-L.png", Image.fromarray(rng.integers(40, 220, (64, 64), dtype=np.uint8), mode="L"))
    rgba = np.dstack([rng.integers(0, 256, (48, 48, 3)), np.tile(np.arange(48) * 5, (48, 1))]).astype(np.uint8)
    save("alpha.png", Image.fromarray(rgba, mode="RGBA"))
    save("palette.gif", Image.fromarray(ramp).convert("P"))
    save("tiny-20.bmp", Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)))
    return files


@pytest.fixture(scope="module")
def generated_images(tmp_path_factory, embedded):
    folder = tmp_path_factory.mktemp("onnx-images")
    return np.stack([load_image(path) for path in generated_image_files(str(folder), embedded)])


@pytest.fixture(scope="module")
def raw_photos():
    """Every third raw test photo: the embedded test split holds all of them already, as arrays."""
    test_dir = os.path.join(RAW_PHOTOS, "test")
    if not os.path.isdir(test_dir):
        pytest.skip("the raw photos are not beside this checkout")
    paths = [os.path.join(test_dir, fruit, name)
             for fruit in sorted(os.listdir(test_dir)) for name in sorted(os.listdir(os.path.join(test_dir, fruit)))]
    return np.stack([load_image(path) for path in paths[::3]])


# ----------------------------------------------------------------------------------------------
# agreement


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_agrees_on_the_embedded_test_images(exported, embedded, case):
    assert_agrees(exported[case], embedded.test.images)


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_agrees_on_image_files_read_by_load_image(exported, generated_images, case):
    assert_agrees(exported[case], generated_images)


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_agrees_on_the_raw_photos(exported, raw_photos, case):
    assert_agrees(exported[case], raw_photos)


def test_agrees_one_image_at_a_time(exported, embedded):
    exp = exported["grey-standardize-4x3-64-32-trained"]
    for index in (0, 250, 495):
        assert_agrees(exp, embedded.test.images[index:index + 1])


def test_the_comparisons_are_not_all_zeros_and_ones(exported, embedded):
    # A raw-pixel softmax is nearly always 0 or 1, where any two implementations agree; the
    # normalised cases must put many images well inside (0, 1).
    for name in ("grey-scale-4x3-64-he", "grey-standardize-4x3-64-32-trained", "rgb-standardize-6x5-32-trained"):
        probabilities = cnnfruit_proba(exported[name], embedded.test.images)
        unsure = ((probabilities > 0.01) & (probabilities < 0.99)).any(axis=1).mean()
        assert unsure > 0.1, (name, unsure)


def test_every_case_predicts_several_classes(exported, embedded):
    for case in CASES:
        predicted = cnnfruit_proba(exported[case.name], embedded.test.images).argmax(axis=1)
        assert len(np.unique(predicted)) >= 2, case.name
        if case.trained:
            assert (predicted == embedded.test.labels).mean() > 0.4, case.name  # chance is 1/3


def test_raw_pixel_cases_are_not_all_zeros_and_ones(exported, embedded):
    for name in ("grey-none-default-he", "rgb-none-4x3-64-32-trained"):
        probabilities = cnnfruit_proba(exported[name], embedded.test.images)
        assert ((probabilities > 0.01) & (probabilities < 0.99)).any(axis=1).mean() > 0.05, name


def preprocessing_session(color, normalize):
    """A graph of the export's preprocessing alone, inputs -> the network's input tensor."""
    graph = onnx_export._Graph(onnx, DEFAULT_OPSET)
    out = graph.preprocess(INPUT_NAME, color, normalize)
    helper, T = onnx.helper, onnx.TensorProto
    channels = 1 if color == "grey" else 3
    model = helper.make_model(
        helper.make_graph(graph.nodes, "preprocess",
                          [helper.make_tensor_value_info(INPUT_NAME, T.UINT8, ["batch", 32, 32, 3])],
                          [helper.make_tensor_value_info(out, T.FLOAT, ["batch", channels, 32, 32])],
                          initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)], ir_version=8,
    )
    return session_of(model)


def standardize_in_float64_sums(images, color):
    """to_inputs' standardize with its two means summed in float64 (the export's arithmetic)."""
    x = to_inputs(images, color, "none")
    centred = x - x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    variance = (centred * centred).mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    return centred / np.maximum(np.sqrt(variance), np.float32(1e-6))


def flat_images(count=64, seed=3):
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (count, 1, 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.broadcast_to(colours, (count, 32, 32, 3)))


@pytest.mark.parametrize("color", ["grey", "rgb"])
def test_preprocessing_is_bit_for_bit(embedded, generated_images, color):
    images = np.concatenate([embedded.test.images, generated_images, flat_images()])
    for normalize in ("none", "scale"):
        inputs = preprocessing_session(color, normalize).run(None, {INPUT_NAME: images})[0]
        np.testing.assert_array_equal(inputs, to_inputs(images, color, normalize))
    inputs = preprocessing_session(color, "standardize").run(None, {INPUT_NAME: images})[0]
    np.testing.assert_array_equal(inputs, standardize_in_float64_sums(images, color))
    np.testing.assert_allclose(inputs[:496], to_inputs(images[:496], color, "standardize"), rtol=0, atol=2e-6)


def test_flat_images_standardize_to_zero(exported):
    exp = exported["grey-standardize-4x3-64-32-trained"]
    probabilities, _ = exp.session.run(None, {INPUT_NAME: flat_images()})
    zero_input = np.zeros((1, 1, 32, 32), np.float32)
    expected = Network(exp.arch, exp.params).predict_proba(zero_input)
    np.testing.assert_allclose(probabilities, np.repeat(expected, len(probabilities), axis=0), rtol=0, atol=TOLERANCE)


def test_flat_grey_images_agree_with_cnnfruit(exported):
    """Both sum the means in float64, so a flat image standardises to exactly 0 in both."""
    assert_agrees(exported["grey-standardize-4x3-64-32-trained"], flat_images())


# ----------------------------------------------------------------------------------------------
# the file: checker, signature, metadata, opsets


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_full_check_passes(exported, case):
    onnx.checker.check_model(exported[case].model, full_check=True)


@pytest.mark.parametrize("opset", [MIN_OPSET, REDUCE_AXES_AS_INPUT, "newest"])
def test_other_opsets_check_and_give_the_same_outputs(exported, embedded, opset):
    exp = exported["rgb-standardize-6x5-32-trained"]
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    model = build_onnx(exp.arch, exp.params, exp.class_names, "rgb", "standardize", opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    if opset == onnx.defs.onnx_opset_version():
        return  # newer than the installed onnxruntime may run
    images = embedded.test.images[:64]
    ours = session_of(model).run(None, {INPUT_NAME: images})
    default = exp.session.run(None, {INPUT_NAME: images})
    np.testing.assert_allclose(ours[0], default[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours[1], default[1])


def test_signature_metadata_and_version(exported, tmp_path):
    exp = exported["grey-scale-4x3-64-he"]
    path = tmp_path / "fruit.onnx"
    export_onnx(exp.arch, exp.params, exp.class_names, "grey", "scale", str(path))
    model = onnx.load(str(path))
    assert model.opset_import[0].domain == "" and model.opset_import[0].version == DEFAULT_OPSET == 17
    assert model.ir_version == 8  # the IR of opset 17, which onnxruntime 1.13 and later read
    assert (model.producer_name, model.producer_version) == ("cnnfruit", __version__)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert json.loads(metadata["class_names"]) == ["Carambula", "Lychee", "Pear"]
    assert (metadata["color"], metadata["normalize"], metadata["image_size"]) == ("grey", "scale", "32")
    assert metadata["cnnfruit_version"] == __version__ and metadata["layers"] == "conv4x3, dense64"

    session = session_of(path)
    assert session.get_modelmeta().custom_metadata_map == metadata
    (image,) = session.get_inputs()
    assert (image.name, image.type, image.shape) == (INPUT_NAME, "tensor(uint8)", ["batch", 32, 32, 3])
    probabilities, classes = session.get_outputs()
    assert (probabilities.name, probabilities.type, probabilities.shape) == (PROBABILITIES_NAME, "tensor(float)", ["batch", 3])
    assert (classes.name, classes.type, classes.shape) == (CLASS_INDEX_NAME, "tensor(int64)", ["batch"])
    assert {t.name for t in model.graph.initializer} >= set(exp.params)  # checkpoint's names


def test_float64_parameters_are_exported_as_float32(exported, embedded):
    exp = exported["grey-scale-4x3-64-he"]
    wide = {name: value.astype(np.float64) for name, value in exp.params.items()}
    model = build_onnx(exp.arch, wide, exp.class_names, "grey", "scale")
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer if t.name in wide)
    ours = session_of(model).run(None, {INPUT_NAME: embedded.test.images})[0]
    np.testing.assert_array_equal(ours, exp.session.run(None, {INPUT_NAME: embedded.test.images})[0])


# ----------------------------------------------------------------------------------------------
# checkpoints, damaged files, bad arguments


def saved_checkpoint(exp, path):
    classifier(exp).save(str(path))
    return str(path)


def test_export_checkpoint_round_trip(exported, embedded, tmp_path):
    exp = exported["grey-standardize-4x3-64-32-trained"]
    model_path = saved_checkpoint(exp, tmp_path / "model.npz")
    onnx_path = tmp_path / "model.onnx"
    export_checkpoint(model_path, str(onnx_path))
    from_file = Exported(exp.case, exp.arch, exp.params, exp.class_names, None, session_of(onnx_path))
    assert_agrees(from_file, embedded.test.images)
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "model.onnx"]  # no temporary file left


def damaged(kind, good, folder):
    path = os.path.join(folder, f"{kind}.npz")
    if kind == "truncated":
        with open(good, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
    elif kind == "text":
        with open(path, "w") as f:
            f.write("not a model\n")
    elif kind == "png":
        Image.new("RGB", (8, 8)).save(path, format="PNG")
    elif kind == "other-npz":
        np.savez(path, weights=np.zeros(3))
    elif kind == "pickled":
        buffer = io.BytesIO()
        np.savez(buffer, format_version=np.array([{"evil": 1}], dtype=object))
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
    elif kind == "wrong-shape":
        with np.load(good, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        arrays["param_conv_w"] = arrays["param_conv_w"][:1]
        np.savez(path, **arrays)
    elif kind == "missing":
        pass
    return path


@pytest.mark.parametrize("kind", ["truncated", "text", "png", "other-npz", "pickled", "wrong-shape", "missing"])
def test_damaged_checkpoints_fail_as_they_do_for_eval(exported, tmp_path, kind):
    good = saved_checkpoint(exported["grey-scale-4x3-64-he"], tmp_path / "good.npz")
    path = damaged(kind, good, str(tmp_path))
    with pytest.raises(CnnfruitError) as loading:
        checkpoint.load(path)
    with pytest.raises(CnnfruitError) as exporting:
        export_checkpoint(path, str(tmp_path / "out.onnx"))
    assert str(exporting.value) == str(loading.value)
    assert not (tmp_path / "out.onnx").exists()


def test_unwritable_destination_is_a_clean_error(exported, tmp_path):
    exp = exported["grey-scale-4x3-64-he"]
    with pytest.raises(CnnfruitError, match="cannot write"):
        export_onnx(exp.arch, exp.params, exp.class_names, "grey", "scale", str(tmp_path / "no" / "such.onnx"))


def test_without_onnx_installed_the_error_says_how_to_install(exported, monkeypatch):
    exp = exported["grey-scale-4x3-64-he"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(CnnfruitError, match=r"pip install 'cnnfruit\[onnx\]'"):
        build_onnx(exp.arch, exp.params, exp.class_names, "grey", "scale")


@pytest.mark.parametrize("change, message", [
    (dict(color="rgb"), "color 'rgb' gives 3 input channel"),
    (dict(color="sepia"), "unknown color mode"),
    (dict(normalize="zscore"), "unknown normalization"),
    (dict(class_names=["a", "b"]), "class_names must be 3 strings"),
    (dict(params="no dense1"), "params must hold exactly"),
    (dict(params="int conv_w"), r"params\['conv_w'\] must be floats"),
    (dict(opset=MIN_OPSET - 1), "opset must be an integer"),
])
def test_inconsistent_arguments_are_refused(exported, change, message):
    exp = exported["grey-scale-4x3-64-he"]
    arguments = dict(arch=exp.arch, params=dict(exp.params), class_names=exp.class_names, color="grey",
                     normalize="scale")
    arguments.update(change)
    if change.get("params") == "no dense1":
        arguments["params"] = {k: v for k, v in exp.params.items() if not k.startswith("dense1")}
    elif change.get("params") == "int conv_w":
        arguments["params"] = {**exp.params, "conv_w": exp.params["conv_w"].astype(np.int32)}
    with pytest.raises(CnnfruitError, match=message):
        build_onnx(**arguments)


def test_networks_too_large_for_one_file_are_refused(exported, monkeypatch):
    exp = exported["grey-none-default-he"]
    monkeypatch.setattr(onnx_export, "MAX_WEIGHT_BYTES", 1000)
    with pytest.raises(CnnfruitError, match="do not fit in one ONNX file"):
        build_onnx(exp.arch, exp.params, exp.class_names, "grey", "none")


def test_classifier_export_and_the_export_command_write_the_same_model(tmp_path, rng):
    from click.testing import CliRunner

    from cnnfruit.cli import main

    arch = Architecture(in_channels=3, kernels=2, kernel_size=5, hidden=(6,), classes=3)
    clf = Classifier(arch, init_parameters(arch, rng), ["a", "b", "c"], "rgb", "scale")
    clf.save(str(tmp_path / "model.npz"))
    clf.export(str(tmp_path / "library.onnx"))
    result = CliRunner().invoke(main, ["export", str(tmp_path / "model.npz"), str(tmp_path / "cli.onnx")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(f"Wrote {tmp_path / 'cli.onnx'} (")
    images = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    expected = clf.predict_proba(images)
    for name in ("library.onnx", "cli.onnx"):
        probabilities, index = session_of(str(tmp_path / name)).run(None, {"images": images})
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert index.tolist() == expected.argmax(axis=1).tolist()
    broken = CliRunner().invoke(main, ["export", "/etc/hostname", str(tmp_path / "x.onnx")])
    assert broken.exit_code == 1
    assert broken.output == "Error: /etc/hostname is not a cnnfruit checkpoint: not an .npz archive, or a truncated one\n"
