"""Channel dependency groups and channel slicing on any functional graph (models/groups.py).

The numerical proof: channels made exactly 0 by construction are found dead, and removing them
leaves every output unchanged (in float64, and in float32 within 1e-5) on every standard
architecture and on a user's model with every layer kind; the multiply-adds of the smaller
model match TensorFlow's own count.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import arch_params, kill_classes, shuffle_batchnorm
from train2infer.models import builders, graph, groups, work
from train2infer.models.config import ARCHS
from train2infer.shrink import channels


def _scale_layer():
    import tf_keras as keras

    class Scale(keras.layers.Layer):
        """A user's custom layer: one learned factor per channel (unknown to the grouping)."""

        def build(self, shape):
            self.s = self.add_weight(name="s", shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.s

    return Scale


def every_kind_model():
    """A user's model: residual add, depthwise x2, separable, concatenation, squeeze-excite with a
    reshape, hard-swish as TF ops, a custom layer, a transposed and a grouped conv, Flatten -> Dense."""
    import tensorflow as tf
    import tf_keras as keras

    L = keras.layers
    x0 = keras.Input((16, 16, 3), name="image")
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(L.Conv2D(16, 3, padding="same",
                                                                                 use_bias=False, name="stem")(x0)))
    y = L.ReLU(name="res_relu")(L.BatchNormalization(name="res_bn")(L.Conv2D(16, 3, padding="same",
                                                                               name="res_conv")(x)))
    x = L.Add(name="add")([x, y])
    a = L.Conv2D(8, 1, activation="relu", name="a")(x)
    b = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu", name="dw2")(x)
    c = L.SeparableConv2D(8, 3, padding="same", activation="relu", name="sep")(x)
    x = L.Concatenate(name="cat")([a, b, c])
    s = L.Dense(12, activation="relu", name="se_reduce")(L.GlobalAveragePooling2D(name="se_pool")(x))
    s = L.Reshape((1, 1, 48), name="se_shape")(L.Dense(48, activation="sigmoid", name="se_expand")(s))
    x = L.Multiply(name="se")([x, s])  # squeeze-excite with Dense layers (EfficientNet's uses 1x1 convs)
    x = L.Conv2D(16, 1, name="mix")(x)
    x = x * tf.nn.relu6(x + 3.0) / 6.0  # hard-swish, as TFOpLambda layers
    x = _scale_layer()(name="custom")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up")(x)
    x = L.Conv2D(8, 3, groups=2, activation="relu", name="grouped")(x)
    x = L.Conv2D(12, 3, strides=2, activation="relu", name="down")(x)
    x = L.Flatten(name="flat")(L.MaxPooling2D(name="pool")(x))
    x = L.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(x0, L.Dense(3, name="logits")(x), name="every_kind")


def _group(deps, name):
    return next(g for g in deps.groups if g.name == name)


def test_groups_follow_adds_concatenations_and_squeeze_excite():
    model = every_kind_model()
    deps = groups.dependencies(model)
    stream = _group(deps, "stem")  # stem + residual branch + add, through the depthwise into the concat
    assert stream.sources == ["stem", "res_conv", "se_expand"] and len(stream.classes) == 16
    assert {"add", "dw2", "cat", "se"} <= set(stream.tensors) and stream.pinned is None
    assert _group(deps, "a").sources == ["a", "se_expand"]  # each concat slice is its own group
    assert _group(deps, "sep").readers == ["se_reduce", "mix"]
    assert len(_group(deps, "se_reduce").classes) == 12
    assert len(_group(deps, "down").classes) == 12 and _group(deps, "down").readers == ["hidden"]
    # a concatenation maps output slices to its inputs; depthwise x2 gives each class two channels
    cat = deps.index["cat"]
    assert np.array_equal(cat[:8], deps.index["a"]) and np.array_equal(cat[8:40], deps.index["dw2"])
    assert np.array_equal(deps.index["dw2"], np.repeat(deps.index["add"], 2))
    assert np.array_equal(deps.index["flat"][: 12 * 2], np.tile(deps.index["down"], 2))  # Flatten: p * C + c
    # the custom and the grouped layer pin every channel they touch; so do the input and the output
    assert deps.pinned["custom"] == "Scale is not known to keep channels apart"
    assert deps.pinned["grouped"] == "grouped convolution (2 groups)"
    pinned = {g.name: g.pinned for g in deps.groups if g.pinned}
    assert set(pinned) == {"image", "mix", "custom", "up", "grouped", "logits"}
    assert pinned["mix"].startswith("custom:") and pinned["logits"] == "logits: the model's output"


def test_a_layer_called_twice_is_pinned():
    import tf_keras as keras

    L = keras.layers
    x0 = keras.Input((8, 8, 4))
    shared = L.Conv2D(4, 1, name="shared")
    x = L.Conv2D(4, 3, padding="same", name="c")(x0)
    x = L.Add()([shared(x), shared(x0)])
    deps = groups.dependencies(keras.Model(x0, L.Dense(2, name="out")(L.GlobalAveragePooling2D()(x))))
    assert deps.pinned["shared"] == "called more than once"
    assert _group(deps, "c").pinned == "shared: called more than once"


def test_an_op_with_a_per_channel_constant_is_pinned():
    import tf_keras as keras

    x0 = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1, name="c")(x0)
    x = keras.layers.Conv2D(4, 1, name="d")(x * np.arange(4, dtype="float32") + 1.0)  # constant of shape (4,)
    deps = groups.dependencies(keras.Model(x0, x))
    why = _group(deps, "c").pinned
    assert why.startswith("tf.math.multiply") and why.endswith(": TFOpLambda is not known to keep channels apart")
    assert _group(deps, "d").pinned == "d: the model's output"


def _dead_removal_is_exact(model, seed=0, image=None):
    """Kill a quarter of every free group's classes, find the dead ones, remove them: same outputs."""
    rng = np.random.default_rng(seed)
    shuffle_batchnorm(model, seed)
    deps = groups.dependencies(model)
    victims = {c for g in deps.groups if not g.pinned
               for c in rng.choice(g.classes, max(1, len(g.classes) // 4), replace=False).tolist()}
    kill_classes(model, deps, victims)
    x = rng.uniform(0, 1, (8, *(image or model.input_shape[1:]))).astype(np.float32)
    chosen = channels.plan(model, x, "dead", keep=1.0)
    assert victims <= chosen.removed
    shrunk = groups.slice_model(model, chosen.deps, chosen.removed)
    assert work.summary(shrunk)["macs"] < work.summary(model)["macs"]
    want, got = graph.to_float64(model)(x.astype(np.float64)), graph.to_float64(shrunk)(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)  # exact, up to float64 rounding
    np.testing.assert_allclose(shrunk(x), model(x), rtol=0, atol=1e-5)
    traced = work.traced_macs(shrunk)  # TensorFlow's own count of the smaller model, layer by layer
    for row in work.layer_macs(shrunk):
        if row["layer"] in traced:
            assert traced[row["layer"]] == pytest.approx(row["macs"], rel=0.02), row
    return chosen, shrunk


def test_removing_dead_channels_of_every_layer_kind_keeps_the_outputs():
    model = every_kind_model()
    chosen, shrunk = _dead_removal_is_exact(model)
    kept = {r["name"]: r for r in chosen.groups}
    assert kept["stem"]["kept"] < 16 and kept["down"]["kept"] < 12 and kept["hidden"]["kept"] < 16
    assert kept["mix"]["kept"] == 16 and kept["mix"]["pinned"]  # pinned by the custom layer: left whole
    assert shrunk.get_layer("dw2").output_shape[-1] == 2 * kept["stem"]["kept"]
    positions = np.prod(model.get_layer("pool").output_shape[1:3])
    assert shrunk.get_layer("hidden").get_weights()[0].shape[0] == positions * kept["down"]["kept"]
    assert shrunk.get_layer("custom").get_weights()[0].shape == (16,)


@pytest.mark.slow
@pytest.mark.parametrize("arch", arch_params(ARCHS))
def test_removing_dead_channels_of_a_standard_architecture_keeps_the_outputs(arch):
    model = builders.build_application((32, 32, 3), 10, arch=arch)
    chosen, _ = _dead_removal_is_exact(model)
    free = [r for r in chosen.groups if not r["pinned"]]
    assert len(free) >= 10 and all(r["kept"] < r["width"] for r in free)
    assert {r["pinned"] for r in chosen.groups if r["pinned"]} == {
        f"{model.layers[0].name}: the model's input", "logits: the model's output"}


def test_the_built_in_resnet_couples_each_residual_stage_and_shrinks_exactly():
    model = builders.build_resnet((16, 16, 3), 10, filters=(8, 16, 16), residual_blocks=(0, 1, 1))
    deps = groups.dependencies(model)
    # a stage's conv, its pooling and both blocks' second convs feed the adds: one group per stage
    assert _group(deps, "s1_conv").sources == ["s1_conv", "s1r0c1_conv"]
    assert _group(deps, "s2_conv").sources == ["s2_conv", "s2r0c1_conv"]
    assert len(_group(deps, "s1r0c0_conv").classes) == 16  # a block's inner conv is free on its own
    chosen, shrunk = _dead_removal_is_exact(model)
    kept = {r["name"]: r["kept"] for r in chosen.groups}
    assert shrunk.get_layer("s1r0_add").output_shape[-1] == kept["s1_conv"] < 16


def test_a_registered_custom_layer_is_shrunk_instead_of_pinned():
    """docs/pruning.md's example: one ``register`` call and the user's layer is understood."""
    from train2infer.models import rules

    model = every_kind_model()
    scale = type(model.get_layer("custom"))
    assert rules.rule_for(model.get_layer("custom")) is None
    rules.register(scale, channels="per_channel", slice=lambda layer, i, o: ({}, [layer.get_weights()[0][o]]))
    try:
        deps = groups.dependencies(model)
        assert "custom" not in deps.pinned and not _group(deps, "mix").pinned
        chosen, shrunk = _dead_removal_is_exact(model)  # its weights sliced with the channels: same outputs
        kept = {r["name"]: r["kept"] for r in chosen.groups}["mix"]
        assert kept < 16 and shrunk.get_layer("custom").get_weights()[0].shape == (kept,)
    finally:
        rules.RULES.pop(scale)
    with pytest.raises(ValueError, match="unknown channels rule 'sideways'"):
        rules.register(scale, channels="sideways")
