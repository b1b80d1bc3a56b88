"""convert.xnnpack: the float-softmax-output rewrite keeps int8 top-1 and lets XNNPACK take it all."""

import numpy as np
import pytest

from edgeship.convert.xnnpack import float_softmax_output
from edgeship.errors import UserInputError
from edgeship.runtime.backends import open_backend


def test_float_softmax_output_matches_int8_and_is_delegated(converted_run, mnist5k, tmp_path):
    int8_path = converted_run.out_dir / "model_int8.tflite"
    rewritten = tmp_path / "model_int8_float_softmax.tflite"
    rewritten.write_bytes(float_softmax_output(int8_path.read_bytes()))
    images = mnist5k.x_test[:200]
    for backend in ("litert-ref", "litert", "tflm"):
        # each runtime against its own int8 softmax: same int8 logits, only the softmax differs
        with open_backend(backend, int8_path) as original:
            int8_probabilities = original.infer(images)
            quantum = original.outputs()[0].scale
        with open_backend(backend, rewritten, verify=False) as opened:
            assert opened.outputs()[0].dtype == "float32" and opened.inputs()[0].dtype == "int8"
            probabilities = opened.infer(images)
        # int8 softmax quantizes the same probabilities: within one output quantum
        assert np.abs(probabilities - int8_probabilities).max() <= quantum * 1.01, backend
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        confident = np.sort(int8_probabilities, axis=1)[:, -2] < int8_probabilities.max(axis=1)
        assert (probabilities.argmax(1) == int8_probabilities.argmax(1))[confident].all(), backend
    with open_backend("litert", rewritten, verify=False) as opened:
        delegation = opened.details()["delegation"]
    assert "SOFTMAX" not in delegation["outside"]
    assert delegation["ops"] == 10  # lenet5's 9 ops and the DEQUANTIZE


def test_float_softmax_output_refuses_a_float_model(converted_run):
    with pytest.raises(UserInputError, match="int8 model whose output is a SOFTMAX"):
        float_softmax_output((converted_run.out_dir / "model_float.tflite").read_bytes())


# --- model_int8_xnnpack.tflite: rewrites for XNNPACK (convert --xnnpack) ------------------------

def _int8_model(build, input_shape, seed=0, per_tensor=False):
    """A tiny tf_keras model (random weights, biases) exported int8 with edgeship's settings."""
    from edgeship.convert.tflite import export_tflite
    from edgeship.deps import import_tf_keras

    tf, keras = import_tf_keras()
    tf.random.set_seed(seed)
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, build(keras.layers, inputs))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    calibration = rng.random((64, *input_shape), dtype=np.float32)
    return export_tflite(model, calibration, "int8", per_tensor)


def _raw_outputs(tflite_bytes, images, resolver, batch=1):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite_bytes, num_threads=1,
                              experimental_op_resolver_type=getattr(OpResolverType, resolver))
    (detail,) = interpreter.get_input_details()
    if batch != 1:
        interpreter.resize_tensor_input(detail["index"], [batch, *images.shape[1:]])
    interpreter.allocate_tensors()
    outputs = []
    for start in range(0, len(images), batch):
        interpreter.set_tensor(detail["index"], images[start:start + batch])
        interpreter.invoke()
        outputs.append([interpreter.get_tensor(out["index"]).copy()
                        for out in sorted(interpreter.get_output_details(),
                                          key=lambda d: d["name"])])
    return [np.concatenate(column) for column in zip(*outputs)]


def _op_names(tflite_bytes):
    from edgeship.tflite_graph import op_names, read_model

    return op_names(read_model(tflite_bytes))


RESOLVERS = ("BUILTIN_REF", "AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES")


def test_space_to_depth_rewrite_is_bit_exact_on_unlike_convolutions():
    from edgeship.convert.xnnpack import rewrite_for_xnnpack

    def build(layers, x):
        two = layers.Concatenate()([x, x])            # a two-channel input
        three = layers.Concatenate()([x, x, x])       # RGB-like: left alone
        odd = layers.Cropping2D(((0, 1), (0, 1)))(x)  # 15x15: left alone
        return [layers.Conv2D(4, 3, activation="relu", name="a_k3_valid")(x),
                layers.Conv2D(6, 5, padding="same", name="b_k5_same")(x),
                layers.Conv2D(4, 3, strides=2, padding="same", name="c_k3_s2_same")(x),
                layers.Conv2D(5, (3, 5), strides=2, name="d_k3x5_s2_valid")(x),
                layers.Conv2D(4, 3, padding="same", name="e_k3_same")(x),   # 4x the MACs: left
                layers.Conv2D(4, 5, padding="same", name="f_two_channels")(two),
                layers.Conv2D(4, 3, name="g_three_channels")(three),
                layers.Conv2D(4, 3, name="h_odd_input")(odd),
                layers.MaxPooling2D(2, name="i_pooled")(   # folded: max over the phases
                    layers.Conv2D(4, 3, activation="relu", name="i_conv")(x))]

    for per_tensor in (False, True):
        original = _int8_model(build, (16, 16, 1), per_tensor=per_tensor)
        rewritten, rewrites = rewrite_for_xnnpack(original, "exact")
        assert len(rewrites) == 6 and all(rewrite.exact for rewrite in rewrites)
        assert sum("max over phases" in rewrite.became for rewrite in rewrites) == 1
        names = _op_names(rewritten)
        assert names.count("SPACE_TO_DEPTH") == 6 and names.count("DEPTH_TO_SPACE") == 3
        assert names.count("CONV_2D") == 9 and names.count("MAX_POOL_2D") == 1
        images = np.random.default_rng(1).integers(-128, 128, (24, 16, 16, 1), dtype=np.int8)
        for resolver in RESOLVERS:
            expected = _raw_outputs(original, images, resolver)
            for before, after in zip(expected, _raw_outputs(rewritten, images, resolver)):
                np.testing.assert_array_equal(after, before, err_msg=resolver)
            for before, after in zip(expected, _raw_outputs(rewritten, images, resolver,
                                                            batch=len(images))):
                np.testing.assert_array_equal(after, before, err_msg=f"{resolver}, batched")


def test_average_pool_rewrite_differs_only_where_the_mean_is_half_way():
    from edgeship.convert.xnnpack import rewrite_for_xnnpack

    def build(layers, x):
        return [layers.AveragePooling2D(2, name="a_2x2")(x),
                layers.AveragePooling2D(3, strides=1, name="b_3x3")(x),
                layers.AveragePooling2D(3, strides=2, padding="same", name="c_padded")(x)]

    original = _int8_model(build, (8, 8, 3))
    assert rewrite_for_xnnpack(original, "exact") == (original, [])
    rewritten, rewrites = rewrite_for_xnnpack(original, "rounding")
    assert [rewrite.exact for rewrite in rewrites] == [False, False]
    assert _op_names(rewritten).count("AVERAGE_POOL_2D") == 1  # the padded one stays
    images = np.random.default_rng(2).integers(-128, 128, (64, 8, 8, 3), dtype=np.int8)
    sums = images.astype(np.int32).reshape(64, 4, 2, 4, 2, 3).sum(axis=(2, 4))
    tie = sums % 4 == 2
    for resolver in RESOLVERS:
        (pool2, pool3, padded) = _raw_outputs(original, images, resolver)
        (new2, new3, new_padded) = _raw_outputs(rewritten, images, resolver)
        difference = np.abs(new2.astype(np.int32) - pool2)
        assert difference.max() <= 1 and not difference[~tie].any(), resolver
        assert difference[tie].any(), resolver  # the ties do round differently somewhere
        np.testing.assert_array_equal(new3, pool3, err_msg=resolver)  # 9 taps: no half-way mean
        np.testing.assert_array_equal(new_padded, padded, err_msg=resolver)


def test_rewrite_modes():
    from edgeship.convert.xnnpack import rewrite_for_xnnpack

    original = _int8_model(lambda layers, x: layers.Conv2D(4, 3)(x), (8, 8, 1))
    assert rewrite_for_xnnpack(original, "off") == (original, [])
    with pytest.raises(UserInputError, match="unknown XNNPACK rewrite mode"):
        rewrite_for_xnnpack(original, "fast")


def test_convert_delivers_the_xnnpack_file_bit_exact_on_every_runtime(converted_run, mnist5k):
    """lenet5's first convolution reads one channel: convert writes the rewritten phone file."""
    from edgeship.run_dir import RunDir

    run_dir = converted_run.out_dir
    record = RunDir(run_dir).section("convert")["xnnpack"]
    assert record["mode"] == "exact" and record["exact"] and len(record["rewrites"]) == 1
    assert record["file"] == "model_int8_xnnpack.tflite"
    rewritten = run_dir / record["file"]
    images = mnist5k.x_test[:100]
    for backend in ("litert-ref", "litert", "tflm"):
        with open_backend(backend, run_dir / "model_int8.tflite") as original:
            expected = original.infer_raw(original.quantize_input(images))
        with open_backend(backend, rewritten) as opened:
            np.testing.assert_array_equal(opened.infer_raw(opened.quantize_input(images)),
                                          expected, err_msg=backend)
    with open_backend("litert", rewritten) as opened:
        delegation = opened.details()["delegation"]
    assert delegation["ops"] == 11  # lenet5's 9, SPACE_TO_DEPTH and DEPTH_TO_SPACE
    scores = {row["file"]: row for row in converted_run.report["artifacts"]}
    assert scores[record["file"]]["accuracy"] == scores["model_int8.tflite"]["accuracy"]
