"""Write a ResNet-18-style tf_keras model (random weights) to a .keras file, as a user would bring one.

A stride-2 stem and max pooling, then basic residual blocks (two 3x3 convs + BatchNorm + ReLU, an
identity or 1x1-projection shortcut, ``Add`` then ReLU), four stages of two blocks, global average
pooling and a linear classifier:
the graph shape that channel pruning must follow through its adds. Used by the recorded
experiment ``reports/experiments/resnet-shapes96/`` through ``model=file``.

Run:  python tools/resnet_style.py --out data/models/resnet18s.keras --size 96 --channels 3 --classes 6 \
          --widths 32 64 128 256
"""

from __future__ import annotations

import argparse

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)


def block(x, filters: int, stride: int, name: str):
    """One basic residual block; a 1x1 projection shortcut when the shape changes."""
    import tf_keras as keras

    L = keras.layers
    y = L.Conv2D(filters, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = L.ReLU(name=f"{name}_relu1")(L.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y))
    y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = L.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = L.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(x)
    return L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([x, y]))


def build(size: int, channels: int, classes: int, widths: list[int], seed: int = 0):
    """The model: a 3x3 stride-2 stem and 3x3 stride-2 max pooling, ``len(widths)`` stages of two
    blocks (stride 2 from the second)."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inputs = keras.Input((size, size, channels), name="image")
    x = L.Conv2D(widths[0], 3, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(momentum=0.9, name="stem_bn")(x))
    x = L.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for s, filters in enumerate(widths):
        x = block(x, filters, 1 if s == 0 else 2, f"stage{s}_block0")
        x = block(x, filters, 1, f"stage{s}_block1")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(classes, name="logits")(x), name="resnet18_style")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    args = ap.parse_args()
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model = build(args.size, args.channels, args.classes, args.widths)
    model.save(args.out)
    print(f"{model.name}: {model.count_params():,} parameters -> {args.out}")


if __name__ == "__main__":
    main()
