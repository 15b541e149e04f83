"""dvc.yaml agrees with the code: params sections exist, deps list exactly the imported modules."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from genduel.config import SECTIONS, load_all

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
#: The stages as written; a per-seed stage's ``foreach`` over ``runtime.seeds`` gives its ``do``.
STAGES = {name: spec.get("do", spec) for name, spec in DVC["stages"].items()}
#: The stages trained (or evaluated) once per training seed.
PER_SEED = ("train_vae", "fit_prior", "gan_init", "train_gan", "evaluate")


def _docstring_only(path: Path) -> bool:
    """A package ``__init__`` with no code of its own (a docstring, ``__version__``) is not a
    dependency worth re-running for."""
    def inert(n: ast.stmt) -> bool:
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant):
            return True
        return isinstance(n, ast.Assign) and [ast.unparse(t) for t in n.targets] == ["__version__"]

    return all(inert(n) for n in ast.parse(path.read_text()).body)


def _imported_modules(path: Path) -> set[str]:
    """genduel modules imported anywhere in a file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genduel"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("genduel"))
    return names


def _module_file(name: str) -> Path | None:
    base = ROOT / "src" / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _closure(script: Path) -> set[str]:
    """Files of every genduel module reachable from ``script`` (parents' __init__ included)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for name in _imported_modules(todo.pop()):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append(f)
    return {str(f.relative_to(ROOT)) for f in seen
            if not (f.name == "__init__.py" and _docstring_only(f))}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_exactly_the_imported_library_modules(stage):
    spec = STAGES[stage]
    script = ROOT / "pipeline" / f"{stage}.py"
    assert script.exists(), f"stage {stage} has no pipeline/{stage}.py"
    declared = {d for d in spec["deps"] if d.startswith("src/")}
    needed = _closure(script)
    assert needed - declared == set(), f"{stage}: imported but not in deps"
    assert declared - needed == set(), f"{stage}: in deps but never imported"
    assert len(spec["deps"]) == len(set(spec["deps"])), f"{stage}: duplicate deps"
    assert f"pipeline/{stage}.py" in spec["deps"]
    prefix = f"PYTHONPATH=src python pipeline/{stage}.py"
    assert spec["cmd"].startswith(prefix + (" --seed ${item}" if stage in PER_SEED else ""))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_declared_params_sections_exist_and_match_their_dataclass(stage):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for entry in STAGES[stage].get("params", []):
        section, _, key = entry.partition(".")  # a whole section or one "section.key"
        assert section in SECTIONS, f"{stage} declares unknown section {section}"
        fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
        assert set(params[section]) == fields, f"params.yaml {section} differs from its dataclass"
        assert not key or key in fields, f"{stage} declares unknown param {entry}"


def test_params_yaml_validates():
    loaded = load_all(ROOT / "params.yaml")
    assert set(loaded) == set(SECTIONS)


def test_every_output_path_is_passed_to_its_script():
    for stage, spec in STAGES.items():
        paths = list(spec.get("outs", []))
        paths += [next(iter(m)) if isinstance(m, dict) else m for m in spec.get("metrics", [])]
        for p in paths:
            p = next(iter(p)) if isinstance(p, dict) else p
            parent = str(Path(p).parent)
            assert p in spec["cmd"] or parent in spec["cmd"], f"{stage}: {p} not in its cmd"


def test_evaluate_writes_one_metrics_file_per_row_the_report_reads():
    from genduel.evaluate.run import ROWS as EVAL_ROWS
    from genduel.report.inputs import ROWS as REPORT_ROWS

    declared = [next(iter(m)) for m in STAGES["evaluate"]["metrics"]]
    assert declared == ([f"metrics/seeds/${{item}}/eval_{row}.json" for row in REPORT_ROWS]
                        + ["runs/seeds/${item}/evaluate.json"])
    assert EVAL_ROWS == REPORT_ROWS
    # the report gathers them over the seeds into one file per row
    gathered = [next(iter(m)) for m in STAGES["report"]["metrics"]]
    assert gathered == [f"metrics/eval_{row}.json" for row in REPORT_ROWS]


def test_per_seed_stages_run_once_per_listed_seed_and_only_the_report_reads_the_list():
    """Adding a seed must add stages, not re-run the others: no per-seed stage depends on
    runtime.seeds (its seed is in its cmd and output paths); the report, which gathers the
    seeds, does. Every per-seed output lives under a seeds/<seed>/ folder that the report reads
    whole."""
    for name, spec in DVC["stages"].items():
        if name in PER_SEED:
            assert spec["foreach"] == "${runtime.seeds}", name
            params = spec["do"].get("params", [])
            assert "runtime" not in params and "runtime.seeds" not in params, name
            outs = [next(iter(o)) if isinstance(o, dict) else o
                    for o in spec["do"].get("outs", []) + spec["do"].get("metrics", [])]
            assert outs and all("/seeds/${item}/" in o or o.endswith("/seeds/${item}")
                                for o in outs), name
        else:
            assert "foreach" not in spec, name
    assert "runtime.seeds" in STAGES["report"]["params"]
    assert {"eval/seeds", "artifacts/seeds", "metrics/seeds"} <= set(STAGES["report"]["deps"])


def test_every_stage_but_validate_depends_on_its_output():
    """The validate stage runs first and guards every other stage's outputs (docs/errors.md)."""
    assert list(STAGES)[0] == "validate"
    assert STAGES["validate"]["deps"][:2] == ["pipeline/validate.py", "params.yaml"]
    for stage, spec in STAGES.items():
        if stage != "validate":
            assert "data/params.ok" in spec["deps"], stage


def test_training_stages_do_not_depend_on_checkpoint_every_s():
    """It changes no result: editing it must not re-run training (it is in no resume key)."""
    for stage in ("judge", "train_vae", "train_gan", "evaluate"):
        params = STAGES[stage]["params"]
        assert "runtime" not in params and "runtime.checkpoint_every_s" not in params
        assert "runtime.device" in params
