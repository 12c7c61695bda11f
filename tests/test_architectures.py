"""Standard architectures and a user's own model through prepare -> train -> shrink -> prune ->
convert -> evaluate, each stage's real ``run()`` on tiny 32x32 RGB shapes; channel pruning
(shrink) cuts them all.

Convert exports the pruned model only (float32, full int8, SavedModel): one TFLite conversion
of these graphs takes 8-15 s on this 2-core machine, and every source converts the same way.

Residual adds (MobileNetV2, ResNet50), squeeze-excite multiplies with hard-swish / swish
(MobileNetV3, EfficientNetB0), concatenations (DenseNet121) and a user-built two-branch model
saved to ``.keras``: every stage must take them, and what it reports must be true of them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import params
from train2infer.models.config import ARCHS

MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}

pytestmark = pytest.mark.slow

SMALL = [
    "prepare=shapes", "prepare.image_size=32", "prepare.count=72", "prepare.classes=[circle,square,triangle]",
    "evaluate.chance_check=false",  # one epoch on 72 images: the pipeline's mechanics, not accuracy
    "prepare.workers=1", "train.epochs=1", "train.patience=0", "train.batch_size=16", "shrink.epochs=1",
    "prune.epochs=1",
    "prune.frequency=1", "prune.batch_size=16", "convert.quantization=[int8]", "convert.representative_images=8",
    "convert.max_drop=null",  # one epoch: no accuracy to control (op-by-op conversions would take minutes)
    "convert.check_images=8", "evaluate.runtimes=[litert]", "evaluate.threads=[1]", "evaluate.batch_sizes=[1]",
    "evaluate.warmup_runs=2", "evaluate.min_runs=200", "evaluate.min_seconds=0", "evaluate.min_seconds_others=0",
    "evaluate.runs_per_round=100",
    "evaluate.block_warmup=1", "evaluate.throughput_seconds=0.01",
]


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory):
    """72 shapes images, 32x32 RGB, 3 classes, as a prepared-data folder."""
    from train2infer.prepare.run import run

    folder = tmp_path_factory.mktemp("shapes32")
    run(params(SMALL).prepare, 0, folder / "prepared", folder / "summary.json", folder / "timing.json")
    return folder / "prepared"


def through_the_pipeline(p, data, tmp_path) -> dict:
    """Every stage's run() in order, as dvc.yaml chains them; what each returned or wrote."""
    from train2infer.convert.run import run as convert
    from train2infer.evaluate.run import run as evaluate
    from train2infer.prune.run import run as prune
    from train2infer.shrink.run import run as shrink
    from train2infer.train.run import run as train

    m, r = tmp_path / "models", tmp_path / "reports"
    m.mkdir()
    out = {"train": train(p.model, p.train, p.seed, data, m / "trained.keras", r / "train", tmp_path / "backup")}
    out["shrink"] = shrink(p.shrink, p.train, p.seed, data, m / "trained.keras", m / "shrunk.keras", r / "shrink")
    out["prune"] = prune(p.prune, p.train, p.seed, data, m / "trained.keras", m / "pruned.keras", r / "prune")
    sources = {"pruned": m / "pruned.keras"}  # the others convert the same way; conversion is slow here
    (r / "convert").mkdir(parents=True)
    out["convert"] = convert(p.convert, p.seed, data, sources, m / "export", r / "convert" / "summary.json")
    out["evaluate"] = evaluate(p.evaluate, data, m / "trained.keras", m / "export", r / "evaluate")
    out["manifest"] = json.loads((m / "export" / "manifest.json").read_text())
    out["sparsity"] = json.loads((r / "prune" / "sparsity.json").read_text())
    return out


def check_pipeline(out: dict, model) -> None:
    """What must hold for any graph that went through."""
    from train2infer.models import work

    shrink = out["shrink"]  # channel groups followed through adds, concatenations, squeeze-excite
    assert "skipped" not in shrink and shrink["macs_after"] < 0.8 * shrink["macs_before"]
    assert shrink["groups_pruned"] >= 1 and shrink["groups_pinned"] == 2  # the input's and the classifier's
    assert out["prune"]["min_kernel_sparsity"] >= 0.79 and out["prune"]["per_kernel"]
    names = [v["name"] for v in out["manifest"]["variants"]]
    assert names == ["pruned_tflite_float", "pruned_tflite_int8", "pruned_saved_model_float"]
    assert set(out["evaluate"]["variants"]) == {"trained_keras_float"} | {n for n in names if "tflite" in n}
    for v in out["evaluate"]["variants"].values():
        assert 0 <= v["accuracy"] <= 1 and v["latency_p50_ms"] > 0
    entry = out["convert"]["pruned"]
    assert entry["keras_fold"]["max_abs_diff"] <= 1e-5  # BatchNorm folded on the functional graph, float64
    assert entry["keras_fold"]["layers_after"] < entry["keras_fold"]["layers_before"]
    fusion = entry["tflite"]["pruned_tflite_float"]["fusion"]
    credited = {name for op in fusion["ops"] for name in op["keras_layers"]}
    # every kernel layer and merge maps to a TFLite op (Rescaling / Normalization may fold into the stem conv)
    computing = {r["layer"] for r in work.layer_macs(model) if r["kind"] == "kernel" or r["type"] in MERGES}
    computing |= {layer.name for layer in model.layers if type(layer).__name__ == "Concatenate"}
    assert computing <= credited, sorted(computing - credited)[:5]
    assert {u["reason"] for u in fusion["unmapped"]} <= {"identity at inference", "not found in op names"}
    macs = out["manifest"]["sources"]["pruned"]["macs"]
    assert macs == pytest.approx(sum(work.traced_macs(model).values()), rel=0.02)


# 2-8 minutes each here (DenseNet121's 430 layers, ResNet50's 25M weights; MobileNetV3Small 5): they run
# in `make test-archs` (CI runs it after `make test`). `make test` has MobileNetV3Small's and ResNet50's
# channel groups and folding (tests/test_groups.py, tests/test_models.py; helpers.IN_MAKE_TEST) and a
# user's two-branch model through every stage (below).
@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.archs) for a in ARCHS])
def test_every_listed_architecture_goes_through_every_stage(arch, shapes32, tmp_path):
    from train2infer.models import io

    p = params(SMALL + ["model=application", f"model.arch={arch}", f"model.alpha={0.35 if ARCHS[arch] else 1.0}"])
    out = through_the_pipeline(p, shapes32, tmp_path)
    trained = io.load_model(tmp_path / "models" / "trained.keras")
    assert trained.name == arch.lower() and trained.layers[-1].name == "logits"
    assert trained.output_shape == (None, 3)
    check_pipeline(out, trained)


def two_branch_model(shape, classes: int):
    """A user's functional model: a residual add, a concatenation of two branches, a softmax head."""
    import tf_keras as keras

    L = keras.layers
    x0 = keras.Input(shape)
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(x0)
    x = L.ReLU()(L.BatchNormalization()(x))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False)(x)))
    x = L.Add()([x, y])
    a = L.Conv2D(8, 1, activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(L.MaxPooling2D()(x))
    return keras.Model(x0, L.Dense(classes, activation="softmax")(x), name="users_net")


@pytest.fixture(scope="module")
def users_file(shapes32, tmp_path_factory):
    """The two-branch model trained a little by its user and saved to .keras; its test accuracy."""
    import tf_keras as keras

    from train2infer.prepared import load_prepared, to_float

    keras.utils.set_random_seed(1)
    x, y = load_prepared(shapes32, "train")
    model = two_branch_model(x.shape[1:], 3)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(to_float(x), y, epochs=15, verbose=0)
    path = tmp_path_factory.mktemp("user") / "users_net.keras"
    model.save(path)
    xt, yt = load_prepared(shapes32, "test")
    return path, float(np.mean(np.argmax(model.predict(to_float(xt), verbose=0), -1) == yt))


def test_a_users_model_file_goes_through_unchanged_with_zero_epochs(users_file, shapes32, tmp_path):
    """model=file, train.epochs=0: the file's own accuracy, exactly; its softmax removed (logits)."""
    from train2infer.models import io

    path, accuracy = users_file
    p = params(SMALL + ["model=file", f"model.path={path}", "train.epochs=0"])
    out = through_the_pipeline(p, shapes32, tmp_path)
    assert out["evaluate"]["variants"]["trained_keras_float"]["accuracy"] == round(accuracy, 6)  # as metrics round
    assert any("softmax" in n for n in out["train"]["notes"])
    trained = io.load_model(tmp_path / "models" / "trained.keras")
    assert trained.layers[-1].get_config()["activation"] == "linear"
    original = io.load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(original.get_weights(), trained.get_weights()))
    check_pipeline(out, trained)
    live = json.loads((tmp_path / "reports" / "train" / "metrics.json").read_text())
    assert live["epochs_run"] == 0
