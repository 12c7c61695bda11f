"""params.yaml is the composition of conf/; every section validates; bad params fail cleanly."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from helpers import ROOT, compose, run_stage, write_params
from train2infer import config
from train2infer.core import params as P


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    """dvc repro does not compose: the committed params.yaml must equal what DVC writes."""
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), [])
    assert (ROOT / "params.yaml").read_text() == out.read_text(), (
        "params.yaml is stale: run `make params` and commit it"
    )


def _schemas():
    for name, schema in config.SECTIONS.items():
        yield from ((name, s) for s in (schema.values() if isinstance(schema, dict) else [schema]))


def test_every_option_of_every_group_validates_and_mirrors_its_schema():
    """conf/<group>/<option>.yaml and the schema agree key for key (configs mirror code)."""
    for group in (ROOT / "conf").iterdir():
        if not group.is_dir() or group.name == "experiment":  # named runs, composed below
            continue
        for option in sorted(group.glob("*.yaml")):
            existing = [f"model.path={ROOT / 'pyproject.toml'}"] if option.stem == "file" else []  # must exist
            tree = compose([f"{group.name}={option.stem}", *existing])
            obj = config.section(tree, group.name)
            assert set(tree[group.name].keys()) == set(P.as_dict(obj)), option


def test_every_named_experiment_composes_and_validates(tmp_path, monkeypatch):
    """conf/experiment/<name>.yaml is what `dvc exp run -S +experiment=<name>` composes; every
    recorded pipeline run of reports/experiments/ has one (the others time tools, not params)."""
    names = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    tools_only = {"back-to-back", "digits-shrink-recovery", "fresh-clone", "idle-workers", "latency-budget",
                  "latency-noise", "round-to", "sweep-bench"}
    recorded = {p.name for p in (ROOT / "reports" / "experiments").iterdir() if p.is_dir()}
    assert set(names) == recorded - tools_only
    monkeypatch.chdir(tmp_path)  # a model file an experiment makes first (tools/resnet_style.py) exists here
    (tmp_path / "data" / "models").mkdir(parents=True)
    for made in ("resnet18s.keras", "outlier.keras"):
        (tmp_path / "data" / "models" / made).write_bytes(b"")
    for name in names:
        params = config.from_tree(compose([f"+experiment={name}"]))
        assert params.prepare.name and (params.train.epochs >= 1 or params.model.name == "file"), name
    r = config.from_tree(compose(["+experiment=resnet-shrink96"]))
    assert (r.model.name, r.prepare.image_size, r.shrink.keep, r.train.epochs) == ("file", 96, 0.5, 40)
    cifar = config.from_tree(compose(["+experiment=cifar10"]))
    assert (cifar.prepare.name, cifar.prepare.test_path, cifar.train.schedule) == ("folder", "test", "cosine")


def test_defaults_live_only_in_conf():
    """A schema field with a default would let a key deleted from YAML fall back silently."""
    for name, schema in _schemas():
        assert P.defaulted(schema) == [], f"{schema.__name__}: defaults {P.defaulted(schema)}"


def test_a_key_deleted_from_yaml_is_an_error():
    tree = OmegaConf.create(OmegaConf.to_container(compose()))
    del tree.prune["frequency"]
    with pytest.raises(P.ParamsFileError, match="prune.frequency.*missing"):
        config.section(tree, "prune")


@pytest.mark.parametrize(
    "override, message",
    [
        ("prune.final_sparsity=1.0", "prune.final_sparsity=1.0 must be < 1"),
        ("prune.final_sparsity=-0.1", "prune.final_sparsity=-0.1 must be >= 0"),
        ("prune.initial_sparsity=0.9", "prune.initial_sparsity=0.9 must be <= 0.8"),
        ("prune.frequency=0", "prune.frequency=0 must be >= 1"),
        ("prune.end_fraction=0.0", "prune.end_fraction=0.0 must be > 0.0"),
        ("prune.m_by_n=[4,2]", "prune.m_by_n=[4, 2] must be [m, n] with 0 < m < n"),
        ("prune.pattern=m_by_n", None),
        ("prepare.image_size=0", "prepare.image_size=0 must be >= 1"),
        ("prepare.name=imagenet", "prepare.name='imagenet' is not one of: digits, folder, shapes, keras"),
        ("prepare.channels=2", "prepare.channels=2 is not one of: 1, 3"),
        ("prepare.test_fraction=0.9", "prepare.test_fraction=0.9 plus prepare.val_fraction must be < 1"),
        ("model.name=vgg", "model.name='vgg' is not one of: cnn, resnet, mobilenet, application, file"),
        ("model.dropout=1.0", "model.dropout=1.0 must be < 1"),
        ("model.residual_blocks=[0,1] model=resnet", "model.residual_blocks=[0, 1] needs one entry per stage of "
         "model.filters (4)"),
        ("model.residual_blocks=[0,1,-1,1] model=resnet", "model.residual_blocks[2]=-1 must be >= 0"),
        ("model.filters=[]", "model.filters=[] must list at least one stage width"),
        ("model.filters=[8,0]", "model.filters[1]=0 must be >= 1"),
        ("train.epochs=-1", "train.epochs=-1 must be >= 0"),
        ("train.patience=-1", "train.patience=-1 must be >= 0"),
        ("train.jit_compile=true", "train.jit_compile=True needs train.deterministic=false"),
        ("train.strategy=tpu", "train.strategy='tpu' is not one of: auto, default, mirrored, multi_worker"),
        ("shrink.keep=0", "shrink.keep=0.0 must be > 0"),
        ("shrink.criterion=random", "shrink.criterion='random' is not one of: none, dead, l1, l2"),
        ("shrink.ranking=best", "shrink.ranking='best' is not one of: group, global"),
        ("shrink.round_to=0", "shrink.round_to=0 must be >= 1"),
        ("evaluate.min_runs=50", "evaluate.min_runs=50 must be >= 200"),
        ("evaluate.threads=[-1]", "evaluate.threads[0]=-1 must be >= 0"),
        ("evaluate.threads=[1,4096]", "evaluate.threads=[1, 4096] asks for more threads than this machine's"),
        ("prepare.image_size=100000", "prepare.image_size=100000 must be <= 2048"),
        ("evaluate.batch_sizes=[]", "evaluate.batch_sizes=[] must list at least one batch size"),
        ("convert.quantization=[int4]", "convert.quantization[0]='int4' is not one of: dynamic, float16, int8, pqat"),
        ("convert.quantization=[int8,int8]", "convert.quantization=['int8', 'int8'] must not repeat a mode"),
        ("convert.int8_io=true convert.quantization=[dynamic]",
         "convert.int8_io=True needs int8 or pqat in convert.quantization"),
        ("train.schedule=cosine", "train.patience=3 would stop a cosine schedule before it decays"),
        ("train.schedule=cosine train.patience=0 train.warmup_epochs=40",
         "train.warmup_epochs=40.0 must be < train.epochs (40)"),
        ("train.warmup_epochs=1", "train.warmup_epochs=1.0 needs train.schedule=cosine"),
        ("train.optimizer=lamb", "train.optimizer='lamb' is not one of: adam, sgd"),
        ("train.augment=mixup", "train.augment='mixup' is not one of: auto, none, flip, translate, flip_translate"),
        ("train.label_smoothing=1.0", "train.label_smoothing=1.0 must be < 1"),
        ("shrink.distill_weight=0.5 shrink.epochs=0", "shrink.distill_weight=0.5 needs shrink.epochs >= 1"),
        ("shrink.distill_weight=1.5", "shrink.distill_weight=1.5 must be <= 1"),
        ("shrink.temperature=0", "shrink.temperature=0.0 must be > 0"),
        ("shrink.steps=3 shrink.epochs=2", "shrink.steps=3 needs shrink.epochs >= steps (2 now)"),
        ("shrink.steps=2 shrink.criterion=dead", "shrink.steps=2 needs shrink.criterion l1 or l2"),
        ("prune.distill_weight=-1", "prune.distill_weight=-1.0 must be >= 0"),
        ("scratch.epochs=0", "scratch.epochs=0 must be >= 1, or null"),
        ("evaluate.max_drop=-1", "evaluate.max_drop=-1.0 must be >= 0"),
        ("prepare.test_path=test prepare=folder", "prepare.test_path='test' needs prepare.train_path"),
        ("prepare.train_path=train prepare=folder prepare.test_path=test",
         "prepare.test_fraction=0.15 is not used when prepare.test_path is given"),
        ("prepare.train_path=train prepare=folder prepare.test_path=/data/test prepare.test_fraction=null",
         "prepare.test_path='/data/test' must name a folder inside prepare.path"),
        ("prepare.train_path=../train prepare=folder", "prepare.train_path='../train' must name a folder inside"),
        ("prepare.val_fraction=null prepare=folder", "prepare.val_fraction=None must be a fraction unless"),
        ("+prepare.colour=red", "prepare.colour"),
        ("+train.epoch=5", "did you mean train.epochs?"),
        ("train.epochs=many", "train.epochs"),
    ],
)
def test_bad_parameter_is_named(override, message):
    tree = compose(override.split(" "))  # several overrides: space-separated
    section = override.lstrip("+").split(".")[0]
    if message is None:  # a valid combination
        config.section(tree, section)
        return
    with pytest.raises((P.ParamError, P.ParamsFileError)) as err:
        config.section(tree, section)
    assert str(err.value).startswith(f"params: {message}") or message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=application", "prepare.image_size=16"],
         "params: model.name='application' needs prepare.image_size >= 32 (MobileNetV2 downsamples that much); got 16"),
        (["model.filters=[8,8,8,8,8,8]", "prepare.image_size=32"],
         "params: model.name='cnn' needs prepare.image_size >= 64"),
        (["model=application", "model.arch=ResNet50", "model.alpha=0.5"],
         "params: model.alpha=0.5 is not an option of ResNet50"),
        (["model=application", "model.weights=w.h5"], "params: model.weights='w.h5' must also be model.path"),
        (["model=application", "model.weights=pyproject.toml", "model.path=pyproject.toml", "prepare.channels=1",
          "prepare.image_size=32"],
         "params: model.weights='pyproject.toml' are for RGB images; prepare.channels is 1"),
        (["model=application", "model.weights=nowhere.h5", "model.path=nowhere.h5"],
         "params: model.weights='nowhere.h5' is not a file"),
        (["train.epochs=0"], "params: train.epochs=0 would pass on untrained weights: model=cnn"),
        (["model=file", "model.path=nowhere/mine.keras"], "params: model.path='nowhere/mine.keras' does not exist"),
        (["prepare.image_size=16", "train.translate=16"],
         "params: train.translate=16 shifts by more than the image (prepare.image_size=16)"),
    ],
)
def test_combinations_the_model_cannot_take_are_named(overrides, message, monkeypatch):
    """Rules between model and the other sections fail whole-file validation, before any work."""
    monkeypatch.chdir(ROOT)
    with pytest.raises(P.ParamError) as err:
        config.from_tree(compose(overrides))
    assert str(err.value).startswith(message), str(err.value)


def test_library_errors_are_qualified_by_the_entry_point():
    """Library code names the key it was given; the stage's section is added at the entry."""
    err = P.ParamError("frequency", 100, "never updates the pruning masks")
    assert str(err) == "params: frequency=100 never updates the pruning masks"
    assert str(err.within("prune")) == "params: prune.frequency=100 never updates the pruning masks"
    assert err.within("prune").within("train").section == "prune"


def test_bad_seed_is_named_as_the_top_level_key_whichever_stage_finds_it():
    with pytest.raises(P.ParamError, match="seed") as err:
        P.seed(OmegaConf.create({"seed": -1}))
    assert str(err.value.within("train")) == "params: seed=-1 must be a non-negative integer"  # not train.seed


def test_a_pattern_that_matches_no_layer_is_named():
    P.check_patterns("exclude", ["s0*", "logits"], ["s0_conv", "s1_conv", "logits"])
    with pytest.raises(P.ParamError) as err:
        P.check_patterns("exclude", ["s0*", "logitz"], ["s0_conv", "s1_conv", "logits"])
    assert str(err.value.within("prune")) == ("params: prune.exclude=['s0*', 'logitz'] 'logitz' matches no layer "
                                              "of the model (its layers: s0_conv, s1_conv, logits)")


def test_the_validator_reads_ranges_from_field_metadata():
    @dataclasses.dataclass
    class Knob:
        n: int = P.ranged(1, 5, hi_open=True)
        kinds: list[str] = P.choice("a", "b", each=True)
        sizes: list[int] = P.listed("size", lo=1)

    P.validate(Knob(4, ["a"], [1]))
    for bad, msg in (((5, ["a"], [1]), "n=5 must be < 5"), ((1, ["c"], [1]), "kinds[0]='c' is not one of: a, b"),
                     ((1, [], []), "sizes=[] must list at least one size"), ((1, [], [0]), "sizes[0]=0 must be >= 1")):
        with pytest.raises(P.ParamError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            P.validate(Knob(*bad))


STAGE_ARGS = {
    "prepare": ["--out", "out/prepared", "--summary", "out/summary.json", "--timing", "out/timing.json"],
    "train": ["--data", "out/prepared", "--model", "out/model.keras", "--reports", "out/train", "--backup", "out/b"],
    "shrink": ["--data", "out/prepared", "--model-in", "m.keras", "--model-out", "out/s.keras", "--reports", "out/s"],
    "prune": ["--data", "out/prepared", "--model-in", "m.keras", "--teacher", "m.keras", "--model-out", "out/p.keras",
              "--reports", "out/p"],
    "scratch": ["--data", "out/prepared", "--shrunk", "m.keras", "--trained-metrics", "t.json", "--model",
                "out/c.keras", "--reports", "out/c"],
    "convert": ["--data", "out/prepared", "--trained", "a.keras", "--shrunk", "a.keras", "--pruned", "b.keras",
                "--scratch", "b.keras", "--out", "out/export", "--summary", "out/summary.json"],
    "evaluate": ["--data", "out/prepared", "--baseline", "a.keras", "--export", "out/export", "--out", "out/eval"],
}


@pytest.mark.parametrize(
    "stage, override, key",
    [
        ("prepare", "prepare.image_size=0", "prepare.image_size"),
        ("prepare", "prepare.name=imagenet", "prepare.name"),
        ("train", "train.epochs=0", "train.epochs"),
        ("train", "model.name=vgg", "model.name"),
        ("shrink", "shrink.keep=1.5", "shrink.keep"),
        ("prune", "prune.final_sparsity=1.0", "prune.final_sparsity"),
        ("convert", "convert.float_atol=0", "convert.float_atol"),
        ("evaluate", "evaluate.cv_threshold=0", "evaluate.cv_threshold"),
        ("train", "train.translate=32", "train.translate"),  # a shift as large as the image
        ("train", "train.schedule=cosine", "train.patience"),  # early stopping would cut the schedule
        ("shrink", "shrink.epochs=0 shrink.distill_weight=0.5", "shrink.distill_weight"),  # nothing to distil in
        ("scratch", "scratch.epochs=0", "scratch.epochs"),
        ("evaluate", "evaluate.max_drop=-1", "evaluate.max_drop"),
    ],
)
def test_stage_rejects_bad_param_with_one_line_and_no_outputs(tmp_path, stage, override, key):
    write_params(tmp_path / "params.yaml", override.split(" "))
    proc = run_stage(stage, STAGE_ARGS[stage], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # validated before TensorFlow even loads
    assert lines[0].startswith("error: params: ") and key in lines[0]
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".t2i-staging-*"))


def test_missing_and_corrupt_params_file(tmp_path):
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "params file not found" in proc.stderr
    (tmp_path / "params.yaml").write_text("prepare: [unclosed\n")
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
    (tmp_path / "params.yaml").write_text("")
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "empty" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_any_stage_refuses_a_bad_value_in_another_section_before_work(tmp_path):
    """prepare fails on a bad prune value: the first stage to run stops a doomed pipeline."""
    write_params(tmp_path / "params.yaml", ["prune.final_sparsity=1.5"])
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: params: prune.final_sparsity=1.5 must be < 1"]
    assert not (tmp_path / "out").exists()
