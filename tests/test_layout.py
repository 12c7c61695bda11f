"""The shape of the project: one name per concept, thin stage scripts, no cycles, honest deps."""

from __future__ import annotations

import ast
import subprocess
import sys

import yaml

from helpers import ROOT, SRC, library_imports, module_file
from train2infer import config

STAGES = ["check", "prepare", "train", "shrink", "prune", "scratch", "convert", "evaluate", "report"]
PKG = SRC / "train2infer"
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts), path


def _direct(path) -> set[str]:
    """train2infer modules ``path`` imports itself (any depth in the file, lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("train2infer"):
            base = node.module[len("train2infer"):].lstrip(".")
            for a in node.names:
                name = f"{base}.{a.name}".lstrip(".")
                found.add(name if module_file(name) else base)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("train2infer."):] for a in node.names if a.name.startswith("train2infer.")}
    return {f for f in found if f}


def test_one_name_per_concept():
    """stage = script = package = conf group = params section = reports/<stage>/."""
    assert list(DVC["stages"]) == STAGES
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()} - {"experiment"}  # named runs, not a section
    # no conf group: check (validates every section) and report (no knobs); model: shared, not a stage
    assert groups == set(config.SECTIONS) == (set(STAGES) - {"check", "report"}) | {"model"}
    for stage in STAGES:
        assert (ROOT / "stages" / f"{stage}.py").is_file()
        assert (PKG / stage / "run.py").is_file()
        if stage in groups:
            assert (PKG / stage / "config.py").is_file()


def test_every_output_lives_under_its_stage():
    """A stage writes only under reports/<stage>/, models/ (and prepare: data/prepared), and
    persistent caches (kept between runs, never removed by DVC) under cache/."""
    for name, stage in DVC["stages"].items():
        outs = [o if isinstance(o, dict) else {o: {}}
                for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        assert outs, name
        for o in outs:
            (p, opts), = o.items()
            if p.startswith("cache/"):
                assert (opts or {}).get("persist"), (name, p)
                continue
            assert p.startswith((f"reports/{name}/", "models/")) or p == "data/prepared", (name, p)


def other_schemas(stage: str) -> set[str]:
    """The one exception to "deps = imports": the other stages' schemas. ``train2infer.config``
    imports every ``<stage>/config.py`` to validate all of params.yaml before any work (fail
    fast), but another stage's schema does not shape this stage's outputs: touching
    ``evaluate/config.py`` must not re-run training. ``check``, whose one job is validating every
    section, depends on all of them."""
    if stage == "check":
        return set()
    return {f"src/train2infer/{s}/{f}" for s in STAGES if s != stage for f in ("config.py", "__init__.py")}


def test_dvc_deps_list_every_library_module_a_stage_uses():
    """A stage whose code changes must re-run: dvc.yaml deps cover the script and every module
    it imports (lazily too), but for :func:`other_schemas`, and list nothing it does not use."""
    plumbing = {"core.cli", "train2infer"}  # argument parsing and error printing: no effect on outputs
    for name, stage in DVC["stages"].items():
        assert stage["deps"][0] == f"stages/{name}.py"
        src = [d for d in stage["deps"] if d.startswith("src/")]
        used = {str(module_file(m).relative_to(ROOT)) for m in library_imports(ROOT / "stages" / f"{name}.py")}
        used = {u for u in used if not (u.endswith("__init__.py") and _docstring_only(ROOT / u))}
        used -= other_schemas(name)
        assert not [d for d in src if d in other_schemas(name)], f"{name} depends on another stage's schema"
        for u in used:
            if u not in {str(module_file(p).relative_to(ROOT)) for p in plumbing if module_file(p)}:
                assert any(u == d or u.startswith(d + "/") for d in src), f"{name}: {u} is not a dependency"
        for d in src:
            assert any(u == d or u.startswith(d + "/") for u in used), f"{name}: {d} is listed but not used"


def _docstring_only(path) -> bool:
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


def test_no_import_cycles():
    graph = {name: _direct(path) for name, path in _modules()}
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt != node and nxt in graph and not node.startswith(nxt + "."):  # a package's own children
                visit(nxt, trail + [node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_no_stage_package_imports_another():
    for name, path in _modules():
        own = name.split(".")[0]
        if own not in STAGES:
            continue
        for dep in _direct(path):
            other = dep.split(".")[0]
            assert other == own or other not in STAGES, f"{name} imports {dep}"


def test_core_litert_and_config_import_no_tensorflow():
    code = ("import sys, train2infer, train2infer.config, train2infer.litert, train2infer.core.variants, "
            "train2infer.core.live, train2infer.prepared; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_functions_are_short_and_stage_scripts_thin():
    """No function over 60 lines outside tests; a stage script is at most 40 lines."""
    long = []
    scripts = list((ROOT / "tools").glob("*.py")) + list((ROOT / "stages").glob("*.py"))
    for path in sorted(list(PKG.rglob("*.py")) + scripts):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
    for stage in STAGES:
        script = ROOT / "stages" / f"{stage}.py"
        text = script.read_text()
        assert len(text.splitlines()) <= 40, script
        doc = ast.get_docstring(ast.parse(text))
        assert all(word in doc for word in ("Reads:", "Writes:", "Run:")), script
        assert f"from train2infer.{stage}.run import" in text, script


def test_every_model_is_a_dvc_artifact_of_a_declared_output():
    """dvc.yaml's artifacts: each path a stage output; every model a stage writes is one."""
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in DVC["stages"].values() for o in s.get("outs", [])}
    arts = DVC["artifacts"]
    assert {a["path"] for a in arts.values()} <= outs
    assert {o for o in outs if o.startswith("models/")} <= {a["path"] for a in arts.values()}
    for name, a in arts.items():
        assert a["type"] in ("model", "dataset") and a["desc"], name
        if a["path"].endswith(".keras"):
            source = a["path"].split("/")[-1].removesuffix(".keras")
            assert a["labels"] == [f"source-{source}", "format-keras", "precision-float32"], name


def test_layer_kinds_are_known_in_one_registry():
    """Coupling, slicing, filter norms, multiply-adds and BatchNorm folding ask ``models.rules``;
    the modules that do that work name no layer class of their own but the few they are about
    (the input, the BatchNorm that folds, the ReLU that fuses after it)."""
    import re

    from train2infer.models import rules

    allowed = {"InputLayer", "BatchNormalization", "ReLU", "Activation", "Layer"}
    for module in ("models/groups.py", "models/work.py", "models/graph.py", "shrink/channels.py"):
        named = set(re.findall(r"\b(?:L|keras\.layers)\.([A-Z]\w*)", (PKG / module).read_text()))
        assert named <= allowed, f"{module} names {sorted(named - allowed)}: give them a rule in models/rules.py"
    import tf_keras as keras

    kinds = {"reader": keras.layers.Conv2D, "depthwise": keras.layers.DepthwiseConv2D, "merge": keras.layers.Add,
             "concat": keras.layers.Concatenate, "flatten": keras.layers.Flatten,
             "per_channel": keras.layers.BatchNormalization}
    for channels, kind in kinds.items():
        assert rules.RULES[kind].channels == channels
    for kind, rule in rules.RULES.items():  # a reader can be sliced, normed and counted; folding is a flag
        assert rule.channels != "reader" or None not in (rule.slice, rule.filters, rule.macs), kind
    assert callable(rules.register) and "register" in (ROOT / "docs" / "pruning.md").read_text()


def test_requirements_lock_pins_every_dependency_within_pyproject():
    """make installs with ``-c requirements.lock``: every dependency pyproject.toml names (and
    the test extra's) must be pinned there, exactly once, to a version pyproject admits; a bump
    in pyproject.toml without ``make lock`` would otherwise install a version nobody measured."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, _, version = line.partition("==")
        assert version and canonicalize_name(name) not in pins, line
        pins[canonicalize_name(name)] = version
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock (make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is not {req}"
