"""params.yaml is the composition of conf/; every section validates; bad params fail cleanly."""

from __future__ import annotations

import os

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT, compose, run_stage
from train2infer import config


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    """dvc repro does not compose: the committed params.yaml must equal what DVC writes."""
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), [])
    assert (ROOT / "params.yaml").read_text() == out.read_text(), (
        "params.yaml is stale: run `make params` and commit it"
    )


def test_every_section_of_the_default_validates():
    params = config.load_params(ROOT / "params.yaml")
    for name, schema in config.SECTIONS.items():
        obj = config.section(params, name)
        assert isinstance(obj, schema)
        # conf/ and the schema agree key for key (configs mirror code).
        assert set(params[name].keys()) == set(config.as_dict(obj).keys()), name
    assert config.seed(params) == 42


@pytest.mark.parametrize(
    "override, key",
    [
        ("prune.final_sparsity=1.0", "prune.final_sparsity"),
        ("prune.final_sparsity=-0.1", "prune.final_sparsity"),
        ("prune.initial_sparsity=0.9", "prune.initial_sparsity"),
        ("prune.frequency=0", "prune.frequency"),
        ("data.image_size=0", "data.image_size"),
        ("data.image_size=-3", "data.image_size"),
        ("data.name=imagenet", "data.name"),
        ("data.channels=2", "data.channels"),
        ("model.name=resnet", "model.name"),
        ("model.dropout=1.0", "model.dropout"),
        ("train.epochs=0", "train.epochs"),
        ("train.strategy=tpu", "train.strategy"),
        ("evaluate.min_runs=50", "evaluate.min_runs"),
        ("convert.quantization=int4", "convert.quantization"),
        ("evaluate.threads=[-1]", "evaluate.threads[0]"),
        ("evaluate.batch_sizes=[]", "evaluate.batch_sizes"),
        ("+data.colour=red", "data.colour"),
        ("train.epochs=many", "train.epochs"),
    ],
)
def test_bad_parameter_is_named(override, key):
    params = compose([override])
    section = key.split(".")[0]
    with pytest.raises(config.ConfigError) as err:
        config.section(params, section)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_seed_is_named():
    with pytest.raises(config.ConfigError, match="seed"):
        config.seed(OmegaConf.create({"seed": -1}))


def _write_params(path, overrides):
    path.write_text(OmegaConf.to_yaml(compose(overrides)))


STAGE_ARGS = {
    "prepare": ["--out", "out/prepared", "--summary", "out/summary.json"],
    "train": ["--data", "out/prepared", "--model", "out/model.keras", "--reports", "out/train",
              "--backup", "out/backup"],
    "prune": ["--data", "out/prepared", "--model-in", "m.keras", "--shrunk", "out/s.keras", "--model-out", "out/p.keras",
              "--reports", "out/prune"],
    "convert": ["--data", "out/prepared", "--trained", "a.keras", "--shrunk", "a.keras", "--pruned", "b.keras",
                "--out", "out/export", "--summary", "out/summary.json"],
    "evaluate": ["--data", "out/prepared", "--trained", "a.keras", "--shrunk", "a.keras", "--pruned", "b.keras",
                 "--export", "out/export",
                 "--metrics", "out/metrics.json", "--plots", "out/plots"],
}


@pytest.mark.parametrize(
    "stage, override, key",
    [
        ("prepare", "data.image_size=0", "data.image_size"),
        ("prepare", "data.name=imagenet", "data.name"),
        ("train", "train.epochs=0", "train.epochs"),
        ("train", "model.name=resnet", "model.name"),
        ("prune", "prune.final_sparsity=1.0", "prune.final_sparsity"),
        ("convert", "convert.float_atol=0", "convert.float_atol"),
        ("evaluate", "evaluate.cv_threshold=0", "evaluate.cv_threshold"),
    ],
)
def test_stage_rejects_bad_param_with_one_line_and_no_outputs(tmp_path, stage, override, key):
    _write_params(tmp_path / "params.yaml", [override])
    proc = run_stage(stage, STAGE_ARGS[stage], tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # validated before TensorFlow even loads
    assert lines[0].startswith("error: ") and key in lines[0]
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".t2i-staging-*"))


def test_missing_and_corrupt_params_file(tmp_path):
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "params file not found" in proc.stderr
    (tmp_path / "params.yaml").write_text("data: [unclosed\n")
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
    (tmp_path / "params.yaml").write_text("")
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2 and "empty" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_conf_groups_mirror_sections():
    """One name per concept: conf group = params section = stage/schema name."""
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}
    assert groups == set(config.SECTIONS)
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = set(dvc["stages"])
    # data and model are read by prepare and train; report has no knobs
    assert stages == {"prepare", "report"} | (groups - {"data", "model"})
    for stage in stages:
        assert os.path.exists(ROOT / "stages" / f"{stage}.py")


def test_any_stage_refuses_a_bad_value_in_another_section_before_work(tmp_path):
    """prepare fails on a bad prune value: the first stage to run stops a doomed pipeline."""
    _write_params(tmp_path / "params.yaml", ["prune.final_sparsity=1.5"])
    proc = run_stage("prepare", STAGE_ARGS["prepare"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: params: prune.final_sparsity=1.5 must be < 1"]
    assert not (tmp_path / "out").exists()


def _library_imports(path, seen=None):
    """train2infer modules a file imports or runs (``python -m train2infer.x``),
    transitively (AST, no execution)."""
    import ast
    import re

    seen = set() if seen is None else seen
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = re.findall(r"^train2infer\.(\w+)$", node.value)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("train2infer"):
            if node.module == "train2infer":
                names = [a.name for a in node.names]
            else:
                names = [node.module.split(".")[1]]
        for name in names:
            mod = ROOT / "src" / "train2infer" / f"{name}.py"
            if mod.is_file() and name not in seen:
                seen.add(name)
                _library_imports(mod, seen)
    return seen


def test_dvc_deps_list_every_library_module_a_stage_uses():
    """A stage whose code changes must re-run: dvc.yaml deps = script + modules it imports."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    plumbing = {"cli"}  # argument parsing and error printing: does not shape outputs
    for name, stage in dvc["stages"].items():
        script = ROOT / "stages" / f"{name}.py"
        deps = {d for d in stage["deps"] if d.startswith("src/")}
        used = {f"src/train2infer/{m}.py" for m in _library_imports(script) - plumbing}
        assert f"stages/{name}.py" in stage["deps"]
        assert deps == used, f"{name}: missing {sorted(used - deps)}, unused {sorted(deps - used)}"
