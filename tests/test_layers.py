"""The layer units (nn/layers/): each kind against its numpy reference, its gradients against centred
finite differences in float64, then stacks of them as whole networks."""
import numba
import numpy as np
import pytest

from cnnfruit import layerspec
from cnnfruit.errors import SettingError
from cnnfruit.layerspec import ConvSpec, DenseSpec, MaxPoolSpec
from cnnfruit.nn.architecture import Architecture, init_parameters
from cnnfruit.nn.gradcheck import check_gradients, relative_error
from cnnfruit.nn.layers import Conv, MaxPool
from cnnfruit.nn.network import Network
from cnnfruit.nn.optimizers import make_optimizer
from cnnfruit.threads import compute_lock

import naive

LIMIT = 1e-6
# A stack with every kind and both paddings on a small input: conv layers as products, pools on
# even maps, dense layers on flattened maps.
STACK = "conv4x3 same, conv6x3 same, maxpool2, conv5x2 same, conv7x3, maxpool2, dense9"


def conv_unit(C, H, spec, relu_input=False, direct=False):
    return Conv("conv1", spec, (C, H, H), direct=direct, number=2, relu_input=relu_input,
                below_has_parameters=True)


def run_conv(unit, x, w, b):
    """(out, f) of a conv unit on x: f() recomputes out as finite differences change x, w or b."""
    unit.allocate(len(x), x.dtype)
    out = np.empty((len(x), *unit.out_shape), x.dtype)

    def f():
        unit.forward(out, x, {"w": w, "b": b})
        return out.copy()

    return f(), f


# ---- the spec language


def test_a_spec_reads_in_any_case_and_spacing_and_writes_one_way():
    text = " Conv32x3 SAME,conv 32 x 3 same , MaxPool2,conv64x3valid,dense256 "
    assert layerspec.parse(text) == (ConvSpec(32, 3, "same"), ConvSpec(32, 3, "same"), MaxPoolSpec(2), ConvSpec(64, 3),
                                     DenseSpec(256))
    assert layerspec.canonical(text) == "conv32x3 same, conv32x3 same, maxpool2, conv64x3, dense256"
    assert layerspec.parse(layerspec.canonical(text)) == layerspec.parse(text)
    assert layerspec.parse("") == ()


@pytest.mark.parametrize("text, message", [
    ("conv8x3, maxpol2", "layers: layer 2 'maxpol2' is not a layer; did you mean maxpool? Layers are convKxS "
                         "[same|valid], maxpoolP or denseO"),
    ("conv8x3,, dense4", "layers: layer 2 is empty (two commas in a row?)"),
    ("conv8", "layers: layer 1 'conv8' is not a conv layer; write it like conv32x3 or conv32x3 same"),
    ("conv8x3 full", "layers: layer 1 'conv8x3 full' has padding 'full'; use same or valid"),
    ("dense0", "layers: layer 1 'dense0' needs sizes from 1 to 2147483647"),
    ("conv8x4, maxpool2", "layers: layer 2 maxpool2 cannot pool the 8x29x29 maps of layer 1 (conv8x4): 2 does not "
                          "divide 29"),
    ("conv8x40", "layers: layer 1 conv8x40 has a 40x40 kernel, larger than the 1x32x32 input"),
    ("maxpool16, maxpool4", "layers: layer 2 maxpool4 is larger than the 1x2x2 maps of layer 1 (maxpool16): it would "
                            "leave a 0x0 map"),
    ("dense16, maxpool2", "layers: layer 2 maxpool2 needs maps as its input, but follows the 16 vector of layer 1 "
                          "(dense16): conv and maxpool layers go before the dense ones"),
])
def test_a_spec_that_cannot_work_is_one_line_that_names_the_layer_and_the_shapes(text, message):
    with pytest.raises(SettingError) as caught:
        Architecture(layers=text)
    assert str(caught.value) == message


def test_specs_made_in_code_are_checked_too():
    with pytest.raises(SettingError, match="layer 2 dense0 needs whole sizes"):
        Architecture(layers=(ConvSpec(2, 3), DenseSpec(0)))
    with pytest.raises(SettingError, match="layer 1 is 'conv2x3', not a layer spec"):
        Architecture(layers=("conv2x3",))


def test_the_shorthands_describe_the_report_network_and_do_not_mix_with_a_spec():
    assert Architecture() == Architecture(layers="conv8x4 valid, dense841, dense29")
    assert Architecture(kernels=2, kernel_size=5, hidden=(6,)).spec == "conv2x5, dense6"
    with pytest.raises(SettingError, match=r"give the network as layers or by its shorthands \(hidden\), not both"):
        Architecture(layers="dense8", hidden=(8,))


def test_only_the_report_shape_runs_on_the_direct_kernels():
    assert [u.direct for u in Architecture().units() if u.kind == "conv"] == [True]
    assert [u.direct for u in Architecture(layers="conv8x4, dense9").units() if u.kind == "conv"] == [True]
    for layers in ("conv8x4 same, dense9", "conv8x3, maxpool2, dense9", "conv8x4, conv8x3, dense9"):
        assert not any(u.direct for u in Architecture(layers=layers).units() if u.kind == "conv"), layers


def test_parameters_are_named_by_layer():
    single = Architecture(layers="conv2x3, maxpool2, dense4")
    assert list(single.parameter_shapes()) == ["conv_w", "conv_b", "dense0_w", "dense0_b", "dense1_w", "dense1_b"]
    double = Architecture(in_channels=3, layers="conv2x3 same, conv3x3, dense4", classes=5)
    assert double.parameter_shapes() == {"conv0_w": (2, 3, 3, 3), "conv0_b": (2,), "conv1_w": (3, 2, 3, 3),
                                         "conv1_b": (3,), "dense0_w": (3 * 30 * 30, 4), "dense0_b": (4,),
                                         "dense1_w": (4, 5), "dense1_b": (5,)}
    assert double.describe() == "3x32x32 -> conv 2x3x3 same -> conv 3x3x3 -> 2700 -> 4 -> 5"


# ---- each kind against its reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, H, spec, direct", [
    (5, 9, ConvSpec(4, 3, "same"), False), (6, 8, ConvSpec(3, 2, "same"), False), (5, 7, ConvSpec(2, 3), False),
    (8, 6, ConvSpec(3, 6), False), (2, 7, ConvSpec(3, 4, "same"), False), (1, 9, ConvSpec(3, 4), False),
    (3, 6, ConvSpec(2, 3), True), (1, 9, ConvSpec(3, 4), True),
    (8, 8, ConvSpec(32, 3, "same"), False), (16, 7, ConvSpec(16, 3, "same"), False), (9, 3, ConvSpec(32, 3, "same"), False),
])
def test_conv_forward_matches_numpy_on_all_paths(rng, dtype, C, H, spec, direct):
    unit = conv_unit(C, H, spec, direct=direct)
    assert unit.direct == direct
    x = rng.standard_normal((3, C, H, H)).astype(dtype)
    w, b = rng.standard_normal((spec.kernels, C, spec.size, spec.size)).astype(dtype), rng.standard_normal(spec.kernels).astype(dtype)
    out, _ = run_conv(unit, x, w, b)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, naive.conv_forward(x.astype(np.float64), w, b, spec.padding), rtol=tolerance,
                               atol=tolerance)


@pytest.mark.parametrize("C, K, size, padding, winograd", [
    (32, 32, 3, "same", True), (32, 64, 3, "same", True), (8, 32, 3, "same", True), (3, 32, 3, "same", False),
    (8, 16, 3, "same", False), (32, 32, 3, "valid", False), (32, 32, 5, "same", False), (32, 32, 2, "same", False),
])
def test_3x3_same_layers_with_enough_channels_run_as_winograd_products(C, K, size, padding, winograd):
    from cnnfruit.nn.layers.winograd import WinogradProducts

    unit = conv_unit(C, 8, ConvSpec(K, size, padding))
    unit.allocate(2, np.float32)
    assert isinstance(unit._products(), WinogradProducts) == winograd


def test_numpy_wheels_blas_is_found_for_the_conv_kernels():
    """The conv tiles call numpy's gemm themselves where they can find it: on a pip install of numpy
    (its OpenBLAS, ILP64) they must, or every conv layer quietly takes the slower portable path."""
    from threadpoolctl import threadpool_info

    from cnnfruit.nn.kernels import blas

    if not any(info.get("prefix") == "libscipy_openblas" for info in threadpool_info()):
        pytest.skip("numpy here does not use the OpenBLAS of numpy's wheels")
    assert blas.gemm_address(np.float32) and blas.gemm_address(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C, H, spec, relu_input", [
    (5, 9, ConvSpec(4, 3, "same"), True), (3, 8, ConvSpec(6, 2, "same"), False), (4, 7, ConvSpec(3, 3), True),
    (8, 9, ConvSpec(32, 3, "same"), True), (16, 6, ConvSpec(16, 3, "same"), False),
])
def test_the_portable_path_computes_the_same_bits_as_the_tile_kernels(dtype, C, H, spec, relu_input):
    """Without numpy's gemm in reach (another BLAS), the tiles run the same products through np.matmul."""
    results = []
    for portable in (False, True):
        rng = np.random.default_rng(5)  # the same case twice
        unit = conv_unit(C, H, spec, relu_input)
        x = np.maximum(rng.standard_normal((7, C, H, H)), 0).astype(dtype)
        w = rng.standard_normal((spec.kernels, C, spec.size, spec.size)).astype(dtype)
        b = rng.standard_normal(spec.kernels).astype(dtype)
        unit.allocate(len(x), dtype)
        products = unit._products()
        if portable:
            products.gemm = None
        elif products.gemm is None:
            pytest.skip("numpy's gemm is not reachable from the kernels here")
        out = np.empty((len(x), *unit.out_shape), dtype)
        unit.forward(out, x, {"w": w, "b": b})
        dout = rng.standard_normal(out.shape).astype(dtype) * (out > 0)
        g = {"w": np.empty_like(w), "b": np.empty_like(b)}
        dx = np.empty_like(x)
        unit.backward(dx, dout, x, out, {"w": w, "b": b}, g)
        results.append([out, g["w"], g["b"], dx])
    fast, portable = results
    for a, b in zip(fast, portable):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("P, side", [(2, 8), (3, 9), (4, 4), (1, 5)])
def test_maxpool_matches_numpy(rng, P, side):
    """2 x 2 windows (kernels of their own) and others, with equal maxima: in one window all equal,
    in the others of one image two."""
    x = rng.standard_normal((2, 3, side, side))
    x[0, 0, :P, :P] = 1.5  # equal maxima: the first takes the gradient
    if P > 1:
        x[1, :, ::P, 1::P] = x[1, :, 1::P, 1::P]
    unit = MaxPool("pool0", MaxPoolSpec(P), (3, side, side), number=2, relu_input=True, below_has_parameters=True)
    unit.allocate(2, x.dtype)
    out = np.empty((2, 3, side // P, side // P))
    unit.forward(out, x, {})
    assert np.array_equal(out, naive.maxpool_forward(x, P))
    dout, dx = rng.standard_normal(out.shape), np.empty_like(x)
    unit.backward(dx, dout, x, out, {}, {})
    assert np.array_equal(dx, naive.maxpool_backward(x, dout, P))


@pytest.mark.parametrize("P", [2, 3])
def test_maxpool_parallel_kernels_give_their_serial_twins_bits(rng, P):
    """Past dispatch.PARALLEL_MIN_WORK the parallel kernels run; the serial ones (above) are checked
    against numpy."""
    from cnnfruit.nn.dispatch import PARALLEL_MIN_WORK
    from cnnfruit.nn.layers import _kernels_pool as kp

    side = 6 * P
    x = rng.standard_normal((4, -(-PARALLEL_MIN_WORK // (4 * side * side)), side, side)).astype(np.float32)
    x[:, :, ::P, 1::P] = x[:, :, 1::P, 1::P]
    results = []
    for forward, backward in ((kp.maxpool_forward, kp.maxpool_backward),
                              (kp.maxpool_forward_serial, kp.maxpool_backward_serial)):
        if P == 2:
            forward, backward = ((kp.maxpool2_forward, kp.maxpool2_backward) if forward is kp.maxpool_forward
                                 else (kp.maxpool2_forward_serial, kp.maxpool2_backward_serial))
        out = np.empty((*x.shape[:2], 6, 6), np.float32)
        arg = np.empty(out.shape, np.int32)
        dx = np.empty_like(x)
        if P == 2:
            forward(out, arg, x)
            backward(dx, out, arg)
        else:
            forward(out, arg, x, P)
            backward(dx, out, arg, P)
        results.append((out, arg, dx))
    for parallel, serial in zip(*results):
        assert parallel.tobytes() == serial.tobytes()


# ---- each kind's gradients against finite differences


@pytest.mark.parametrize("C, H, spec, direct", [
    (5, 7, ConvSpec(3, 3, "same"), False), (6, 6, ConvSpec(2, 2, "same"), False), (5, 6, ConvSpec(3, 3), False),
    (2, 5, ConvSpec(2, 2, "same"), False), (3, 6, ConvSpec(3, 3), True), (1, 7, ConvSpec(2, 4), True),
    (8, 6, ConvSpec(32, 3, "same"), False), (16, 5, ConvSpec(16, 3, "same"), False),
])
@pytest.mark.parametrize("relu_input", [False, True])
def test_conv_gradients(rng, C, H, spec, direct, relu_input):
    if direct and relu_input:
        pytest.skip("the direct kernels compute the report's conv layer, on the image")
    unit = conv_unit(C, H, spec, relu_input, direct)
    assert unit.direct == direct
    x = rng.standard_normal((2, C, H, H))
    if relu_input:  # a ReLU's output: the unit masks its input gradient where x is 0
        x = np.maximum(x, 0)
    w, b = rng.standard_normal((spec.kernels, C, spec.size, spec.size)), rng.standard_normal(spec.kernels)
    out, f = run_conv(unit, x, w, b)
    upstream = rng.standard_normal(out.shape)
    dout = upstream * (out > 0)  # the unit above hands a gradient that is 0 where the output is
    g = {"w": np.empty_like(w), "b": np.empty_like(b)}
    dx = np.empty_like(x)
    unit.backward(dx, dout, x, out, {"w": w, "b": b}, g)
    assert relative_error(g["w"], naive.numerical_gradient(f, w, upstream)) < LIMIT
    assert relative_error(g["b"], naive.numerical_gradient(f, b, upstream)) < LIMIT
    numeric = naive.numerical_gradient(f, x, upstream)
    assert relative_error(dx, numeric * (x > 0) if relu_input else numeric) < LIMIT


def test_maxpool_gradient(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    unit = MaxPool("pool0", MaxPoolSpec(3), (3, 6, 6), number=2, relu_input=False, below_has_parameters=True)
    unit.allocate(2, x.dtype)
    out, dx = np.empty((2, 3, 2, 2)), np.empty_like(x)

    def f():
        unit.forward(out, x, {})
        return out.copy()

    upstream = rng.standard_normal(out.shape)
    f()
    unit.backward(dx, upstream, x, out, {}, {})
    assert relative_error(dx, naive.numerical_gradient(f, x, upstream)) < LIMIT


# ---- stacks: whole networks


def stack_case(rng, layers=STACK, channels=3, side=12, classes=4, images=3):
    arch = Architecture(in_channels=channels, image_size=side, layers=layers, classes=classes)
    params = init_parameters(arch, rng, dtype=np.float64)
    for name in params:  # non-zero biases, so their gradients are exercised at a generic point
        if name.endswith("_b"):
            params[name][:] = rng.standard_normal(params[name].shape) * 0.1
    x = rng.standard_normal((images, channels, side, side))
    return arch, params, x, rng.integers(0, classes, images)


@pytest.mark.parametrize("layers", [STACK, "maxpool2, conv6x3 same, dense5", "dense7, dense5", "conv5x3, conv6x2",
                                    "conv8x3 same, conv32x3 same, maxpool3, dense5"])
def test_whole_stack_gradients_and_input_gradient(rng, layers):
    arch, params, x, labels = stack_case(rng, layers)
    network = Network(arch, params)
    network.forward(x)
    assert np.allclose(network.logits, naive.network_logits(arch, params, x), rtol=1e-12, atol=1e-12)
    network.loss(labels)
    grads = {name: g.copy() for name, g in network.backward().items()}
    loss = lambda: naive.stack_loss(arch, params, x, labels)  # noqa: E731
    for name, param in params.items():
        entries = some_entries(rng, param)
        numeric = naive.sampled_gradient(loss, param, entries)
        assert np.abs(grads[name]).max() > 0, name
        assert relative_error(grads[name].reshape(-1)[entries], numeric) < LIMIT, name
    network.forward(x)
    network.loss(labels)
    dx = network.input_gradient(network.dlogits.copy())
    entries = some_entries(rng, x)
    assert relative_error(dx.reshape(-1)[entries], naive.sampled_gradient(loss, x, entries)) < LIMIT


def some_entries(rng, array, most=25):
    """At most `most` flat indices of array, in order: every entry of a small one."""
    return np.sort(rng.choice(array.size, min(most, array.size), replace=False))


def test_gradcheck_passes_on_a_stack_with_dropout_weights_and_smoothing():
    arch = Architecture(in_channels=3, image_size=8, layers="conv5x3 same, conv6x3 same, maxpool2, dense7, dense5",
                        classes=3)
    results = check_gradients(arch, images=2, max_entries=60, dropout=0.3, class_weights=[0.5, 2, 1],
                              label_smoothing=0.1)
    assert [r.name for r in results] == list(arch.parameter_shapes())
    assert all(r.relative_error < LIMIT for r in results), results


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_fused_step_of_a_stack_is_backward_then_step(rng, optimizer):
    arch, params, x, labels = stack_case(rng, images=9)
    fused = Network(arch, {k: v.copy() for k, v in params.items()})
    plain = Network(arch, {k: v.copy() for k, v in params.items()})
    rule_fused = make_optimizer(optimizer, fused.params, lr=1e-3)
    rule_plain = make_optimizer(optimizer, plain.params, lr=1e-3)
    for network in (fused, plain):
        network.forward(x)
        network.loss(labels)
    fused.backward_step(rule_fused)
    rule_plain.step(plain.params, plain.backward())
    for name in params:
        assert not np.array_equal(fused.params[name], params[name]), name
        np.testing.assert_allclose(fused.params[name], plain.params[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_a_stack_steps_to_the_same_bits_on_one_and_two_threads(rng):
    """The conv products' tiles and their sums are fixed by the shapes, whatever the workers."""
    arch, params, x, labels = stack_case(rng, layers="conv4x3 same, conv8x3 same, maxpool2, conv32x3 same, conv8x3, dense6",
                                         side=10, images=11)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            network = Network(arch, {k: v.copy() for k, v in params.items()})
            optimizer = make_optimizer("adam", network.params, lr=1e-2)
            with compute_lock():
                for _ in range(3):
                    network.forward(x.astype(np.float32))
                    network.loss(labels)
                    network.backward_step(optimizer)
                dx = network.input_gradient(network.dlogits.copy())
            results.append(({k: v.copy() for k, v in network.params.items()}, dx))
    finally:
        numba.set_num_threads(before)
    (one, dx_one), (two, dx_two) = results
    for name in one:
        assert one[name].tobytes() == two[name].tobytes(), name
    assert dx_one.tobytes() == dx_two.tobytes()
