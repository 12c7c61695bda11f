"""scratch: the shrunk architecture trained from random weights, the control for channel pruning."""

from __future__ import annotations

import json

import numpy as np

from train2infer.models import groups, io
from train2infer.prepared import to_float
from train2infer.scratch import run as scratch
from train2infer.shrink import channels


def test_scratch_trains_the_shrunk_architecture_from_fresh_weights(tmp_path, tiny, prepared, trained, digits):
    splits, _ = digits
    chosen = channels.plan(trained, to_float(splits["train"][0][:200]), "l1", 0.5)
    shrunk = groups.slice_model(trained, chosen.deps, chosen.removed)
    io.save_for_inference(shrunk, tmp_path / "shrunk.keras")
    (tmp_path / "train.json").write_text(json.dumps({"epochs_run": 2}))
    summary = scratch.run(tiny.scratch, tiny.train, 1, 0, prepared, tmp_path / "shrunk.keras", tmp_path / "train.json",
                          tmp_path / "scratch.keras", tmp_path / "reports")
    assert summary["epochs"] == 3  # train's 2 epochs run + shrink's 1: the same total
    model = io.load_model(tmp_path / "scratch.keras")
    assert [(layer.name, layer.output_shape) for layer in model.layers] == \
        [(layer.name, layer.output_shape) for layer in shrunk.layers]
    assert not any(np.allclose(a, b) for a, b in zip(model.get_weights(), shrunk.get_weights()) if a.size > 16)
    assert summary["val_accuracy_inference"] > 0.2  # it learned: twice chance (10 classes) after 3 epochs
    assert "scratch: the shrunk architecture" in scratch.describe(summary)
    assert (tmp_path / "reports" / "metrics.json").is_file()


def test_scratch_length_is_the_shrunk_models_or_given(tmp_path, tiny):
    from dataclasses import replace

    (tmp_path / "m.json").write_text(json.dumps({"epochs_run": 17}))
    assert scratch.total_epochs(tiny.scratch, tmp_path / "m.json", 6) == 23
    assert scratch.total_epochs(replace(tiny.scratch, epochs=5), tmp_path / "m.json", 6) == 5
