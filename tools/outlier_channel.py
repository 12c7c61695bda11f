"""A trained model made to lose accuracy under full int8 without changing its float answers.

Real networks often have a few activation channels with values far larger than the rest; full
integer quantization gives a whole tensor one scale, so the outlier sets the step and the other
channels round to a handful of levels. This tool makes that failure on purpose, exactly: it
multiplies one channel of a BatchNormalization layer's output by ``--scale`` (its gamma and beta)
and divides the matching input channel of the next convolution's kernel by the same factor.
ReLU and max pooling between them commute with a positive factor, so the float model computes the
same function (checked: max |logit difference| printed); int8 does not.

Run:  python tools/outlier_channel.py models/trained.keras data/models/outlier.keras
then the pipeline on it (``conf/experiment/int8_outlier.yaml``):
      dvc exp run -S +experiment=int8_outlier
"""

from __future__ import annotations

import argparse
import sys

import train2infer  # noqa: F401  (first: fixes the Keras flavour before TensorFlow loads)


def scale_channel(model, bn_name: str, conv_name: str, channel: int, scale: float):
    """A copy of ``model`` with channel ``channel`` of ``bn_name``'s output times ``scale`` and
    ``conv_name``'s kernel input channel divided by it (same float function)."""
    from train2infer.models import io

    if scale <= 0:
        raise ValueError(f"--scale must be > 0 (ReLU commutes with positive factors only), got {scale}")
    out = io.clone(model)
    bn, conv = out.get_layer(bn_name), out.get_layer(conv_name)
    gamma, beta, mean, var = bn.get_weights()
    gamma[channel] *= scale
    beta[channel] *= scale
    bn.set_weights([gamma, beta, mean, var])
    weights = conv.get_weights()
    weights[0][:, :, channel, :] /= scale
    conv.set_weights(weights)
    return out


def main(argv=None) -> int:
    import numpy as np

    from train2infer.models import io

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_in")
    ap.add_argument("model_out")
    ap.add_argument("--bn", default="s0c0_bn", help="the BatchNormalization layer whose channel grows")
    ap.add_argument("--conv", default="s0c1_conv", help="the next convolution (ReLU or max pooling between)")
    ap.add_argument("--channel", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1000.0)
    args = ap.parse_args(argv)
    model = io.load_model(args.model_in)
    edited = scale_channel(model, args.bn, args.conv, args.channel, args.scale)
    x = np.random.default_rng(0).uniform(0, 1, (64, *model.input_shape[1:])).astype(np.float32)
    diff = float(np.max(np.abs(model(x, training=False).numpy() - edited(x, training=False).numpy())))
    edited.save(args.model_out)
    print(f"outlier: channel {args.channel} of {args.bn} x{args.scale:g}, {args.conv} input / {args.scale:g}; "
          f"max |logit diff| {diff:.2e} on 64 random images -> {args.model_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
