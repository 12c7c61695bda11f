"""Write procedurally drawn shapes as a PNG image tree ``ROOT/<class>/<n>.png``, to try ``prepare=folder``.

    python tools/make_image_folder.py data/images/shapes10k --count 10000 --image-size 28 --channels 1
    dvc add data/images/shapes10k
    dvc exp run -S prepare=folder -S prepare.path=data/images/shapes10k -S prepare.image_size=28 -S prepare.channels=1
"""

from __future__ import annotations

import argparse

from train2infer.prepare.config import SHAPE_CLASSES
from train2infer.prepare.shapes import generate, write_folder


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    x, y, names = generate(args.count, args.image_size, args.channels, SHAPE_CLASSES, args.seed)
    n = write_folder(args.root, x, y, names)
    print(f"wrote {n} {args.image_size}x{args.image_size}x{args.channels} PNGs in {len(names)} class folders "
          f"under {args.root}")


if __name__ == "__main__":
    main()
