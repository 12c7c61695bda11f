"""prepare: the digits source, the stratified split and the prepared-data format."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_stage
from train2infer import data, sources


def test_digits_are_real_resized_images():
    x, y, names = sources.load_digits(20, 3)
    assert x.shape == (1797, 20, 20, 3) and x.dtype == np.uint8
    assert names == [str(i) for i in range(10)]
    assert np.bincount(y).min() >= 170  # every digit is present in bulk
    assert x.max() > 200 and x.min() == 0  # the 0..16 range was scaled to 8 bits
    assert np.array_equal(x[..., 0], x[..., 2])  # gray replicated into RGB


def test_split_is_stratified_disjoint_and_seeded():
    _, y, _ = sources.load_digits(8, 1)
    idx = data.stratified_split(y, 0.15, 0.15, seed=7)
    all_idx = np.concatenate(list(idx.values()))
    assert len(all_idx) == len(y) and len(np.unique(all_idx)) == len(y)
    for split, frac in (("val", 0.15), ("test", 0.15), ("train", 0.70)):
        share = np.bincount(y[idx[split]], minlength=10) / np.bincount(y)
        assert np.all(np.abs(share - frac) < 0.02), (split, share)
    again = data.stratified_split(y, 0.15, 0.15, seed=7)
    other = data.stratified_split(y, 0.15, 0.15, seed=8)
    assert all(np.array_equal(idx[s], again[s]) for s in idx)
    assert not np.array_equal(idx["test"], other["test"])


def test_split_refuses_a_class_too_small():
    y = np.array([0] * 20 + [1] * 2)
    with pytest.raises(data.DataError, match="class 1 has 2 examples.*needs at least 4"):
        data.stratified_split(y, 0.15, 0.15, seed=0)


def test_prepared_roundtrip_and_bad_files(tmp_path):
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    splits = {s: (x, np.array([0, 1])) for s in data.SPLITS}
    data.save_prepared(tmp_path, splits, ["a", "b"], "test")
    x2, y2 = data.load_prepared(tmp_path, "val")
    assert np.array_equal(x2, x) and y2.tolist() == [0, 1]
    assert data.load_meta(tmp_path)["class_names"] == ["a", "b"]
    (tmp_path / "train.npz").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="corrupt.*train.npz"):
        data.load_prepared(tmp_path, "train")
    with pytest.raises(data.DataError, match="not found"):
        data.load_prepared(tmp_path / "nowhere", "train")
    np.savez(tmp_path / "test.npz", x=np.zeros((0, 4, 4, 1), np.uint8), y=np.zeros(0))
    with pytest.raises(data.DataError, match="empty"):
        data.load_prepared(tmp_path, "test")


def test_make_dataset_scales_and_batches():
    x = np.full((10, 4, 4, 1), 255, np.uint8)
    batches = list(data.make_dataset(x, np.arange(10), 4, shuffle=True, seed=0))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    assert float(batches[0][0].numpy().max()) == 1.0
    assert sorted(np.concatenate([b[1].numpy() for b in batches]).tolist()) == list(range(10))


def test_prepare_stage_writes_data_and_summary(tmp_path):
    from omegaconf import OmegaConf

    from conftest import TINY, compose

    (tmp_path / "params.yaml").write_text(OmegaConf.to_yaml(compose(TINY)))
    proc = run_stage("prepare", ["--out", "d", "--summary", "r/summary.json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = data.read_json(tmp_path / "r" / "summary.json")
    assert summary["image_shape"] == [16, 16, 1]
    assert sum(summary["sizes"].values()) == 1797
    for split in data.SPLITS:
        x, y = data.load_prepared(tmp_path / "d", split)
        assert len(x) == summary["sizes"][split]
        assert sum(summary["counts"][split].values()) == len(y)
    assert not list(tmp_path.glob(".t2i-staging-*"))
