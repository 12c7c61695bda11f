"""Data sources: image folders (every bad case), procedural shapes, Keras datasets offline."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from helpers import TINY, compose, params, run_stage
from train2infer import config
from train2infer.core.params import ParamError, ParamsFileError
from train2infer.prepare import shapes, sources, split
from train2infer.prepare.config import SHAPE_CLASSES
from train2infer.prepare.run import run
from train2infer.prepared import SPLITS, DataError, image_extensions, load_meta, load_prepared


def png_bytes(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def tree(root: Path, spec: dict[str, int], size=(20, 12), start=0) -> Path:
    """root/<class>/img_i.png with ``spec[class]`` distinct RGB images per class."""
    for k, (name, n) in enumerate(spec.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.full((size[1], size[0], 3), (40 * k + i) % 256, np.uint8)
            Image.fromarray(a, "RGB").save(d / f"img_{start + i:03d}.png")
    return root


def folder_params(tmp_path: Path, root: Path, *extra: str) -> Path:
    cfg = compose(TINY + ["prepare=folder", f"prepare.path={root}", "prepare.workers=1", *extra])
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(cfg))
    return tmp_path


def prepare(tmp_path: Path):
    proc = run_stage("prepare", ["--out", "d", "--summary", "r/summary.json", "--timing", "r/timing.json"], tmp_path)
    return proc, tmp_path / "d", tmp_path / "r" / "summary.json"


def assert_failed_cleanly(proc, out: Path, summary: Path, *phrases: str):
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for p in phrases:
        assert p in errors[0], (p, errors[0])
    assert not out.exists() and not summary.exists()
    assert not list(out.parent.glob(".t2i-staging-*"))


# ---------------------------------------------------------------- folder: every mode


def test_every_pil_mode_is_converted(tmp_path):
    d = tmp_path / "root" / "x"
    d.mkdir(parents=True)
    gray = Image.fromarray(np.full((8, 8), 200, np.uint8), "L")
    gray.save(d / "l.png")
    Image.fromarray(np.full((8, 8, 3), (255, 0, 0), np.uint8), "RGB").save(d / "rgb.jpg", quality=100)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 128  # half transparent green over black -> (0, 128, 0)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(np.full((8, 8, 3), (0, 0, 255), np.uint8)).convert("P").save(d / "palette.gif")
    pal = Image.fromarray(np.full((8, 8, 3), (0, 0, 255), np.uint8)).convert("P")
    pal.save(d / "palette_t.png", transparency=pal.getpixel((0, 0)))  # transparent -> black
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(d / "sixteen.png")  # 16-bit gray
    Image.fromarray(np.full((8, 8, 3), (10, 20, 30), np.uint8)).save(d / "rgb.bmp")
    Image.fromarray(np.full((8, 8, 3), (0, 255, 0), np.uint8)).convert("CMYK").save(d / "cmyk.jpg")

    def rgb(name):
        return sources.decode_image(d / name, 4, 3)[0, 0].tolist()

    assert rgb("l.png") == [200, 200, 200]
    assert all(abs(a - b) <= 2 for a, b in zip(rgb("rgb.jpg"), [255, 0, 0]))
    assert rgb("rgba.png") == [0, 128, 0]
    assert rgb("palette.gif") == [0, 0, 255]
    assert rgb("palette_t.png") == [0, 0, 0]
    assert rgb("sixteen.png") == [255, 255, 255]
    assert rgb("rgb.bmp") == [10, 20, 30]
    assert abs(rgb("cmyk.jpg")[1] - 255) <= 3
    for name in ("l.png", "rgb.jpg", "rgba.png", "palette.gif", "sixteen.png", "cmyk.jpg"):
        g = sources.decode_image(d / name, 5, 1)
        assert g.shape == (5, 5, 1) and g.dtype == np.uint8
    assert sources.decode_image(d / "rgb.bmp", 5, 1)[0, 0, 0] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def test_folder_loads_names_sizes_and_labels(tmp_path):
    root = tree(tmp_path / "pets", {"dogs": 9, "cats": 8}, size=(31, 17))
    x, y, names, report = sources.load_folder(root, 10, 1, workers=1)
    assert names == ["cats", "dogs"]  # sorted folder names
    assert x.shape == (17, 10, 10, 1) and np.bincount(y).tolist() == [8, 9]
    assert report == {"skipped": [], "ignored": [], "empty_classes": []}
    # Parallel decoding in worker processes gives the same pixels.
    many = tree(tmp_path / "many", {"a": 150, "b": 150})
    serial = sources.load_folder(many, 8, 3, workers=1)[0]
    assert np.array_equal(sources.load_folder(many, 8, 3, workers=2)[0], serial)


# ---------------------------------------------------------------- folder: bad data


def test_unreadable_and_non_image_files_are_skipped_and_listed(tmp_path):
    root = tree(tmp_path / "root", {"a": 10, "b": 10})
    good = (root / "a" / "img_000.png").read_bytes()
    (root / "a" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "b" / "random.jpg").write_bytes(os.urandom(300))
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("root file")
    (root / "b" / ".DS_Store").write_bytes(b"hidden")
    (root / "empty_class").mkdir()
    proc, out, summary = prepare(folder_params(tmp_path, root))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    assert sorted(e["file"] for e in s["skipped"]) == ["a/truncated.png", "b/empty.png", "b/random.jpg"]
    assert all(e["reason"] for e in s["skipped"])
    assert sorted(s["ignored"]) == ["README.md", "b/notes.txt"]
    assert s["empty_classes"] == ["empty_class"]
    assert s["class_names"] == ["a", "b"] and sum(s["sizes"].values()) == 20
    assert load_meta(out)["class_names"] == ["a", "b"]
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 3, proc.stderr
    assert "skipped 3 unreadable" in warnings[0] and "a/truncated.png" in warnings[0]
    assert "empty_class" in warnings[1] and "b/notes.txt" in warnings[2]


@pytest.mark.parametrize(
    "case, phrases",
    [
        ("missing", ["nowhere: folder not found"]),
        ("empty_root", ["no class folders"]),
        ("file_root", ["not a folder"]),
        ("single_class", ["at least 2 class folders with images, found 1 (only)"]),
        ("empty_classes", ["found 0", "no image files in a, b"]),
        ("one_plus_empty", ["found 1 (a)", "no image files in b"]),
        ("too_small", ["class 'small' has 3 examples", "needs at least 4"]),
        ("all_corrupt", ["class 'bad' has no readable image (2 file(s)", "bad/x0.png"]),
        ("too_small_after_skips", ["class 'b' has 3 examples", "needs at least 4"]),
    ],
)
def test_unusable_folders_fail_with_one_line_and_no_outputs(tmp_path, case, phrases):
    root = tmp_path / "root"
    if case == "missing":
        root = tmp_path / "nowhere"
    elif case == "empty_root":
        root.mkdir()
    elif case == "file_root":
        root.write_text("x")
    elif case == "single_class":
        tree(root, {"only": 12})
    elif case == "empty_classes":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "b" / "notes.txt").write_text("x")
    elif case == "one_plus_empty":
        tree(root, {"a": 12})
        (root / "b").mkdir()
    elif case == "too_small":
        tree(root, {"big": 12, "small": 3})
    elif case == "all_corrupt":
        tree(root, {"good": 12})
        (root / "bad").mkdir()
        for i in range(2):
            (root / "bad" / f"x{i}.png").write_bytes(b"\x89PNG garbage")
    elif case == "too_small_after_skips":
        tree(root, {"a": 12, "b": 3})
        for i in range(4):
            (root / "b" / f"broken{i}.png").write_bytes(b"GIF89a")
    proc, out, summary = prepare(folder_params(tmp_path, root))
    assert_failed_cleanly(proc, out, summary, *phrases)


def test_min_class_size_matches_the_split():
    for vf, tf in ((0.15, 0.15), (0.1, 0.2), (0.3, 0.3), (0.1, 0.0)):
        need = split.min_class_size(vf, tf)
        split.stratified_split(np.zeros(need, np.int64), vf, tf, 0)
        with pytest.raises(DataError, match=f"needs at least {need}"):
            split.stratified_split(np.zeros(need - 1, np.int64), vf, tf, 0)


# ---------------------------------------------------------------- shapes


def test_shapes_are_deterministic_balanced_and_distinct():
    names = list(SHAPE_CLASSES)
    x, y, got = shapes.generate(60, 24, 3, names, seed=5, workers=1)
    assert got == names and x.shape == (60, 24, 24, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [6] * 10
    head, _, _ = shapes.generate(20, 24, 3, names, seed=5, workers=1)
    assert np.array_equal(head, x[:20])  # image i depends only on (seed, i)
    other, _, _ = shapes.generate(20, 24, 3, names, seed=6, workers=1)
    assert not np.array_equal(other, head)
    par, _, _ = shapes.generate(4100, 16, 1, ["circle", "line"], seed=5, workers=2)
    ser, _, _ = shapes.generate(4100, 16, 1, ["circle", "line"], seed=5, workers=1)
    assert np.array_equal(par, ser) and par.shape == (4100, 16, 16, 1)
    # Noise-free shapes: a filled circle covers far more pixels than a line.
    rng = np.random.default_rng(0)
    circle = shapes.draw_shape("circle", 32, rng, 0.4, 0.4, 0.0)
    line = shapes.draw_shape("line", 32, rng, 0.4, 0.4, 0.0)

    def foreground(img):
        return int((np.abs(img.astype(int) - img[0, 0].astype(int)).sum(-1) > 0).sum())

    assert foreground(circle) > 3 * foreground(line) > 0


def test_shapes_config_is_checked():
    with pytest.raises((ParamError, ParamsFileError), match=r"prepare.classes\[1\]='blob' is not one of"):
        config.section(compose(["prepare=shapes", "prepare.classes=[circle,blob]"]), "prepare")
    with pytest.raises((ParamError, ParamsFileError), match="prepare.max_size=0.6 must be <= 0.5"):
        config.section(compose(["prepare=shapes", "prepare.max_size=0.6"]), "prepare")
    with pytest.raises((ParamError, ParamsFileError), match="prepare.bogus"):
        config.section(compose(["prepare=shapes", "+prepare.bogus=1"]), "prepare")


def test_shapes_stage_is_trainable_data(tmp_path):
    p = params(TINY + ["prepare=shapes", "prepare.count=600", "prepare.image_size=16", "prepare.workers=1"])
    s = run(p.prepare, p.seed, tmp_path / "d", tmp_path / "summary.json", tmp_path / "timing.json")
    assert json.loads((tmp_path / "summary.json").read_text()) == {k: v for k, v in s.items() if k != "timing"}
    assert s["class_names"] == ["circle", "rectangle", "triangle", "line", "cross", "star"]
    assert s["image_shape"] == [16, 16, 3]
    assert s["sizes"] == {"train": 420, "val": 90, "test": 90}
    assert list(s["counts"]["test"].values()) == [15] * 6


# ---------------------------------------------------------------- keras


def test_keras_offline_and_not_cached_is_one_clear_line(tmp_path):
    cfg = compose(TINY + ["prepare=keras", "prepare.dataset=fashion_mnist", f"prepare.cache_dir={tmp_path / 'kc'}"])
    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(cfg))
    env = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}  # no network, fast
    proc = run_stage("prepare", ["--out", "d", "--summary", "r/summary.json", "--timing", "r/timing.json"], tmp_path,
                     env=env)
    assert_failed_cleanly(proc, tmp_path / "d", tmp_path / "r" / "summary.json",
                          "Keras dataset fashion_mnist: not in the Keras cache", str(tmp_path / "kc"),
                          "download failed")


def test_keras_config_keeps_the_official_test_split():
    cfg = config.section(compose(["prepare=keras"]), "prepare")
    assert cfg.dataset == "mnist" and cfg.test_fraction is None
    with pytest.raises((ParamError, ParamsFileError), match="prepare.test_fraction=0.2 is not used by prepare=keras"):
        config.section(compose(["prepare=keras", "prepare.test_fraction=0.2"]), "prepare")
    with pytest.raises((ParamError, ParamsFileError), match="prepare.dataset='imagenet' is not one of"):
        config.section(compose(["prepare=keras", "prepare.dataset=imagenet"]), "prepare")


# ---------------------------------------------------------------- digits, split, prepared format


def test_digits_are_real_resized_images():
    x, y, names = sources.load_digits(20, 3)
    assert x.shape == (1797, 20, 20, 3) and x.dtype == np.uint8
    assert names == [str(i) for i in range(10)]
    assert np.bincount(y).min() >= 170  # every digit is present in bulk
    assert x.max() > 200 and x.min() == 0  # the 0..16 range was scaled to 8 bits
    assert np.array_equal(x[..., 0], x[..., 2])  # gray replicated into RGB


def test_split_is_stratified_disjoint_and_seeded():
    _, y, _ = sources.load_digits(8, 1)
    idx = split.stratified_split(y, 0.15, 0.15, seed=7)
    all_idx = np.concatenate(list(idx.values()))
    assert len(all_idx) == len(y) and len(np.unique(all_idx)) == len(y)
    for part, frac in (("val", 0.15), ("test", 0.15), ("train", 0.70)):
        share = np.bincount(y[idx[part]], minlength=10) / np.bincount(y)
        assert np.all(np.abs(share - frac) < 0.02), (part, share)
    again = split.stratified_split(y, 0.15, 0.15, seed=7)
    other = split.stratified_split(y, 0.15, 0.15, seed=8)
    assert all(np.array_equal(idx[k], again[k]) for k in idx)
    assert not np.array_equal(idx["test"], other["test"])


def test_split_refuses_a_class_too_small():
    y = np.array([0] * 20 + [1] * 2)
    with pytest.raises(DataError, match="class 1 has 2 examples.*needs at least 4"):
        split.stratified_split(y, 0.15, 0.15, seed=0)


def test_prepared_roundtrip_and_bad_files(tmp_path):
    from train2infer.prepared import save_prepared

    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    save_prepared(tmp_path, {k: (x, np.array([0, 1])) for k in SPLITS}, ["a", "b"], "test")
    x2, y2 = load_prepared(tmp_path, "val")
    assert np.array_equal(x2, x) and y2.tolist() == [0, 1]
    assert load_meta(tmp_path)["class_names"] == ["a", "b"]
    (tmp_path / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt.*train.npz"):
        load_prepared(tmp_path, "train")
    with pytest.raises(DataError, match="not found"):
        load_prepared(tmp_path / "nowhere", "train")
    np.savez(tmp_path / "test.npz", x=np.zeros((0, 4, 4, 1), np.uint8), y=np.zeros(0))
    with pytest.raises(DataError, match="empty"):
        load_prepared(tmp_path, "test")


def test_prepare_run_writes_data_and_summary(tmp_path, tiny):
    summary = run(tiny.prepare, tiny.seed, tmp_path / "d", tmp_path / "summary.json", tmp_path / "timing.json")
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing == summary.pop("timing") and timing["seconds"] > 0 and timing["images_per_s"] > 0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary  # no timing in the summary
    assert summary["image_shape"] == [16, 16, 1] and summary["source"] == "digits"
    assert sum(summary["sizes"].values()) == 1797
    for part in SPLITS:
        x, y = load_prepared(tmp_path / "d", part)
        assert len(x) == summary["sizes"][part]
        assert sum(summary["counts"][part].values()) == len(y)


def test_given_splits_are_used_as_they_are(tmp_path):
    """A benchmark's own test (and validation) folders: every image there lands in that split."""
    root = tmp_path / "data"
    tree(root / "train", {"cat": 12, "dog": 12})
    for name, levels in (("cat", (201, 202, 203)), ("dog", (211, 212, 213, 214))):  # grey levels train lacks
        (root / "test" / name).mkdir(parents=True)
        for v in levels:
            Image.fromarray(np.full((12, 20, 3), v, np.uint8), "RGB").save(root / "test" / name / f"t{v}.png")
    tree(root / "val", {"cat": 2, "dog": 2}, start=200)
    folder_params(tmp_path, root, "prepare.train_path=train", "prepare.test_path=test", "prepare.test_fraction=null")
    proc, out, summary = prepare(tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    assert s["sizes"]["test"] == 7 and s["counts"]["test"] == {"cat": 3, "dog": 4}
    assert s["sizes"]["train"] + s["sizes"]["val"] == 24 and s["given_splits"] == {"test": str(root / "test")}
    x_test, _ = load_prepared(out, "test")
    assert sorted({int(v) for v in x_test[..., 0].ravel()}) == [201, 202, 203, 211, 212, 213, 214]
    folder_params(tmp_path, root, "prepare.train_path=train", "prepare.test_path=test", "prepare.test_fraction=null",
                  "prepare.val_path=val", "prepare.val_fraction=null")
    proc, out, summary = prepare(tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    assert (s["sizes"]["train"], s["sizes"]["val"], s["sizes"]["test"]) == (24, 4, 7)


@pytest.mark.parametrize("layout, extra, phrases", [
    # train/ and test/ read as two classes: refused, with the settings that point at them
    ({"train": {"a": 5, "b": 5}, "test": {"a": 2, "b": 2}}, [],
     ["holds split folders (test, train), not class folders", "prepare.train_path=train prepare.test_path=test"]),
    # a test folder whose classes differ from the training folder's
    ({"train": {"a": 5, "b": 5}, "test": {"a": 2, "c": 2}},
     ["prepare.train_path=train", "prepare.test_path=test", "prepare.test_fraction=null"],
     ["prepare.test_path: the classes of", "differ from the training folder's (missing b; not in training: c)"]),
    ({"train": {"a": 5, "b": 5}}, ["prepare.train_path=train", "prepare.test_path=test", "prepare.test_fraction=null"],
     ["test: folder not found"]),
])
def test_split_folders_that_do_not_fit_fail_with_one_line(tmp_path, layout, extra, phrases):
    root = tmp_path / "data"
    for sub, spec in layout.items():
        tree(root / sub, spec)
    folder_params(tmp_path, root, *extra)
    proc, out, summary = prepare(tmp_path)
    assert_failed_cleanly(proc, out, summary, *phrases)


def test_every_format_pillow_reads_is_an_image(tmp_path):
    """PPM/PGM, TIFF and WebP (common in public datasets) are images, not ignored files."""
    assert {".ppm", ".pgm", ".tif", ".tiff", ".webp", ".png", ".jpg"} <= set(image_extensions())
    root = tmp_path / "data"
    for k, (name, fmt, ext) in enumerate([("a", "PPM", "ppm"), ("b", "TIFF", "tif"), ("c", "WEBP", "webp")]):
        (root / name).mkdir(parents=True)
        for i in range(4):
            img = Image.fromarray(np.full((6, 6, 3), 60 * k + i, np.uint8), "RGB")
            img.save(root / name / f"x{i}.{ext}", fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    (root / "b" / "gray.pgm").write_bytes(png_bytes(Image.new("L", (6, 6), 7), "PPM"))
    images, labels, names, report = sources.load_folder(root, 6, 3, workers=1)
    assert names == ["a", "b", "c"] and list(np.bincount(labels)) == [4, 5, 4]
    assert report["ignored"] == [] and report["skipped"] == []
    assert sorted({int(v) for v in images[labels == 2][..., 0].ravel()}) == [120, 121, 122, 123]  # lossless WebP


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares width x height gray pixels and holds none (PIL reads the size first)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_a_large_scan_is_an_image_and_only_a_huge_one_is_skipped(tmp_path):
    """Issue: a 225-megapixel scan was skipped as a "decompression bomb" (PIL's bound: 89 M)."""
    from PIL import Image

    from train2infer.prepare.sources import MAX_PIXELS, _decode_or_reason

    big = tmp_path / "scan.png"
    Image.new("L", (10_000, 9_500), 200).save(big)  # 95 megapixels: above PIL's bound
    out = _decode_or_reason((big, 8, 1))
    assert isinstance(out, np.ndarray) and out.shape == (8, 8, 1) and int(out.mean()) == 200
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 30_000, 30_000)  # 900 megapixels declared
    assert 30_000 ** 2 > MAX_PIXELS
    reason = _decode_or_reason((huge, 8, 1))
    assert isinstance(reason, str) and "DecompressionBomb" in reason and f"{MAX_PIXELS}" in reason, reason


@pytest.mark.parametrize("source", ["digits", "shapes", "folder"])
def test_the_check_stage_knows_the_training_count_before_prepare_runs(tmp_path, source):
    """check's data-dependent checks rest on this count (issue: prune.frequency failed only after
    train and shrink had run): the images prepare then makes, exactly, without decoding any."""
    from train2infer.check.run import train_images

    extra = {"digits": [], "shapes": ["prepare=shapes", "prepare.count=601", "prepare.image_size=16",
                                      "prepare.workers=1"],
             "folder": ["prepare=folder", f"prepare.path={tmp_path / 'pets'}", "prepare.image_size=8",
                        "prepare.workers=1"]}[source]
    if source == "folder":
        tree(tmp_path / "pets", {"dogs": 23, "cats": 17, "owls": 11})
    p = params(TINY + extra)
    s = run(p.prepare, p.seed, tmp_path / "d", tmp_path / "summary.json", tmp_path / "timing.json")
    assert train_images(p.prepare) == s["sizes"]["train"] > 0
