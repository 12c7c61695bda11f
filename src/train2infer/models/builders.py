"""Model builders (tf_keras, i.e. Keras 2, as TF-MOT requires), one per ``model.name``."""

from __future__ import annotations

from typing import Sequence

import tf_keras as keras


def build_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (32, 64),
    convs_per_stage: int = 2,
    kernel_size: int = 3,
    dense_units: int = 64,
    dropout: float = 0.2,
    bn_momentum: float = 0.9,
    seed: int = 0,
    output_dtype: str = "float32",
) -> keras.Model:
    """A CNN of ``Conv2D -> BatchNormalization -> ReLU`` blocks that outputs logits.

    Each stage has ``convs_per_stage`` blocks followed by 2x2 max pooling; then global
    average pooling, an optional ``Dense+ReLU`` and the classifier. Layer names are stable
    (``s{stage}c{conv}_conv``, ``_bn``, ``_relu``, ``gap``, ``hidden``, ``logits``) so that
    reports can map TFLite ops back to them.

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: Number of output logits.
        filters: Width of each stage.
        convs_per_stage: Conv blocks per stage.
        kernel_size: Square convolution kernel size.
        dense_units: Width of the hidden dense layer; 0 for none.
        dropout: Dropout rate before the classifier.
        bn_momentum: BatchNormalization moving-average momentum.
        seed: Seed for the weight initialisers.
        output_dtype: dtype of the logits (keep float32 under mixed precision).

    Returns:
        An uncompiled functional model named ``cnn``.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x, k = inputs, 0
    for s, width in enumerate(filters):
        for c in range(convs_per_stage):
            x = conv_bn_relu(x, keras.layers.Conv2D, f"s{s}c{c}", seed + k, bn_momentum, "conv",
                             filters=width, kernel_size=kernel_size, padding="same")
            k += 1
        x = keras.layers.MaxPooling2D(name=f"s{s}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_units:
        x = keras.layers.Dense(dense_units, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed + k),
                               name="hidden")(x)
    return keras.Model(inputs, classifier(x, num_classes, dropout, seed, seed + k + 1, output_dtype), name="cnn")


def build_resnet(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (16, 32, 64, 128),
    residual_blocks: Sequence[int] = (0, 1, 0, 1),
    dropout: float = 0.0,
    bn_momentum: float = 0.9,
    seed: int = 0,
    output_dtype: str = "float32",
) -> keras.Model:
    """A ResNet-9-style network (D. Page, "How to train your ResNet", 2018), at any width.

    Stage 0 is one ``Conv2D 3x3 -> BN -> ReLU`` at full resolution (the "prep" layer); every
    later stage is a conv block, 2x2 max pooling, then ``residual_blocks[s]`` blocks of two
    conv blocks added to their input (``x + f(x)``, identity shortcut). Global average pooling,
    dropout and the classifier end it. With widths (64, 128, 256, 512) this is Page's network
    (~380 M MACs on 32x32); a quarter of them makes ~24 M. Names: ``s{stage}_conv``,
    ``s{stage}r{block}c{conv}_conv`` (``_bn``, ``_relu``), ``s{stage}r{block}_add``, ``s{stage}_pool``.

    Args:
        input_shape: ``(height, width, channels)``.
        num_classes: Number of output logits.
        filters: Width of each stage (stage 0 does not pool).
        residual_blocks: Residual blocks after each stage's pooling; as long as ``filters``.
        dropout: Dropout rate before the classifier.
        bn_momentum: BatchNormalization momentum.
        seed: Seed for the weight initialisers.
        output_dtype: dtype of the logits.

    Returns:
        An uncompiled functional model named ``resnet``.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x, k = inputs, 0
    for s, (width, blocks) in enumerate(zip(filters, residual_blocks)):
        x = conv_bn_relu(x, keras.layers.Conv2D, f"s{s}", seed + k, bn_momentum, "conv", filters=width,
                         kernel_size=3, padding="same")
        k += 1
        if s:
            x = keras.layers.MaxPooling2D(name=f"s{s}_pool")(x)
        for b in range(blocks):
            y = x
            for c in range(2):
                y = conv_bn_relu(y, keras.layers.Conv2D, f"s{s}r{b}c{c}", seed + k, bn_momentum, "conv",
                                 filters=width, kernel_size=3, padding="same")
                k += 1
            x = keras.layers.Add(name=f"s{s}r{b}_add")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier(x, num_classes, dropout, seed, seed + k + 1, output_dtype), name="resnet")


def conv_bn_relu(x, layer, name: str, seed: int, bn_momentum: float, suffix: str, **conv):
    """``layer(**conv)`` without bias (He-initialised), BatchNormalization, ReLU, named
    ``{name}_{suffix}``, ``{name}[_{suffix}]_bn`` and ``..._relu`` (the conv's suffix is
    kept in the BN/ReLU names unless it is ``conv``)."""
    init_key = "depthwise_initializer" if layer is keras.layers.DepthwiseConv2D else "kernel_initializer"
    x = layer(use_bias=False, name=f"{name}_{suffix}", **{init_key: keras.initializers.HeNormal(seed=seed)}, **conv)(x)
    tag = name if suffix == "conv" else f"{name}_{suffix}"
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{tag}_bn")(x)
    return keras.layers.ReLU(name=f"{tag}_relu")(x)


def classifier(x, num_classes: int, dropout: float, seed: int, init_seed: int, output_dtype: str):
    """Dropout (if any) and the ``logits`` Dense layer."""
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
    return keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=init_seed),
                              dtype=output_dtype, name="logits")(x)


def build_mobilenet(
    input_shape: Sequence[int],
    num_classes: int,
    stem_filters: int = 16,
    filters: Sequence[int] = (32, 64, 128),
    blocks_per_stage: int = 2,
    dropout: float = 0.2,
    bn_momentum: float = 0.9,
    seed: int = 0,
    output_dtype: str = "float32",
) -> keras.Model:
    """A MobileNet-style chain whose body XNNPACK's sparse inference accepts.

    ``ZeroPadding2D(1) -> Conv2D 3x3 stride 2 (valid)`` stem on 3 channels, then per stage
    ``blocks_per_stage`` blocks of ``DepthwiseConv2D 3x3 -> BN -> ReLU -> Conv2D 1x1 ->
    BN -> ReLU`` (the first block of every stage after the first has a stride-2
    depthwise convolution behind a ``ZeroPadding2D(1)``), then global average pooling
    with ``keepdims`` (XNNPACK's ``MEAN`` end of the sparse subgraph), flatten, dropout
    and the classifier. This is the structure TF-MOT's ``PruneForLatencyOnXNNPack``
    checks; only the 1x1 convolutions are pruned under that policy.

    Args:
        input_shape: ``(height, width, channels)``; the sparse path needs 3 channels.
        num_classes: Number of output logits.
        stem_filters: Width of the stem convolution.
        filters: Width of each stage's 1x1 convolutions.
        blocks_per_stage: Depthwise-separable blocks per stage.
        dropout: Dropout rate before the classifier.
        bn_momentum: BatchNormalization momentum.
        seed: Seed for the weight initialisers.
        output_dtype: dtype of the logits.

    Returns:
        An uncompiled functional model named ``mobilenet``.
    """
    L = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = L.ZeroPadding2D(1, name="stem_pad")(inputs)
    x = conv_bn_relu(x, L.Conv2D, "stem", seed, bn_momentum, "conv", filters=stem_filters, kernel_size=3, strides=2,
                     padding="valid")
    k = 1
    for s, width in enumerate(filters):
        for b in range(blocks_per_stage):
            name = f"s{s}b{b}"
            if s > 0 and b == 0:  # stride 2 behind explicit padding (XNNPACK's sparse subgraph rule)
                x = L.ZeroPadding2D(1, name=f"{name}_pad")(x)
                x = conv_bn_relu(x, L.DepthwiseConv2D, name, seed + k, bn_momentum, "dw", kernel_size=3, strides=2,
                                 padding="valid")
            else:
                x = conv_bn_relu(x, L.DepthwiseConv2D, name, seed + k, bn_momentum, "dw", kernel_size=3, padding="same")
            x = conv_bn_relu(x, L.Conv2D, name, seed + k + 1, bn_momentum, "pw", filters=width, kernel_size=1)
            k += 2
    x = L.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    x = L.Flatten(name="flatten")(x)
    return keras.Model(inputs, classifier(x, num_classes, dropout, seed, seed + k, output_dtype), name="mobilenet")


def build_application(
    input_shape: Sequence[int],
    num_classes: int,
    arch: str = "MobileNetV2",
    alpha: float = 1.0,
    weights: str | None = None,
    dropout: float = 0.2,
    bn_momentum: float = 0.9,
    seed: int = 0,
    output_dtype: str = "float32",
) -> keras.Model:
    """A ``tf_keras.applications`` body without its top, global average pooling and our head.

    Nothing downloads: ``weights`` is None (random initialisation, seeded by the global
    seed that :func:`train2infer.fit.setup` sets) or a local weights file for the body.
    The body takes images in [0, 1] as every model here does (MobileNetV3's built-in
    rescaling is switched off; EfficientNet's stays, and its stem BatchNorm absorbs the
    scale). Every BatchNormalization gets ``bn_momentum``.

    Args:
        input_shape: ``(height, width, channels)``; at least 32x32.
        num_classes: Number of output logits.
        arch: A name in :data:`train2infer.models.config.ARCHS`.
        alpha: Width multiplier (MobileNets only).
        weights: None, or the path of a weights file for the body.
        dropout: Dropout rate before the classifier.
        bn_momentum: BatchNormalization momentum for fine-tuning.
        seed: Seed of the head's initialisers.
        output_dtype: dtype of the logits.

    Returns:
        An uncompiled flat functional model named ``arch.lower()``, output layer ``logits``.

    Raises:
        Train2InferError: If the application refuses the shape or the weights file.
    """
    from train2infer import Train2InferError
    from train2infer.models.config import ARCHS

    extra = {"alpha": alpha} if ARCHS[arch] else {}
    if arch.startswith("MobileNetV3"):
        extra["include_preprocessing"] = False
    try:
        body = getattr(keras.applications, arch)(input_shape=tuple(input_shape), include_top=False,
                                                 weights=weights, pooling="avg", **extra)
    except (ValueError, OSError) as exc:
        raise Train2InferError(f"cannot build {arch}: {' '.join(str(exc).split())[:300]}") from None
    for layer in body.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = classifier(body.output, num_classes, dropout, seed, seed + 1, output_dtype)
    return keras.Model(body.input, x, name=arch.lower())


def build_model(name: str, input_shape: Sequence[int], num_classes: int, seed: int, **options) -> keras.Model:
    """Build the model called ``name`` (the ``model.name`` parameter) with its options."""
    builders = {"cnn": build_cnn, "resnet": build_resnet, "mobilenet": build_mobilenet,
                "application": build_application}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(builders)}")
    return builders[name](input_shape, num_classes, seed=seed, **options)
