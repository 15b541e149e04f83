"""The documentation cannot drift: every relative link and ``#anchor`` of README.md and docs/*.md
resolves (GitHub's heading slugs), and docs/params.md lists every key of params.yaml with its
current default and the stages that re-run when it changes (from dvc.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text lowercased, every character but letters,
    digits, spaces, ``-`` and ``_`` dropped, each space turned into ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(text):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path) -> list[str]:
    """``<page>: <target> (<why>)`` for each relative link of ``page`` whose file is missing or
    whose ``#anchor`` is no heading of the target; web and mail links are not followed."""
    problems = []
    for line in _prose(page.read_text(encoding="utf-8")):
        line = re.sub(r"``.*?``|`[^`]*`(?![^\[]*\]\()", "", line)  # code spans name no links
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{page.name}: {target} (no such file)")
            elif anchor and (dest.suffix != ".md" or
                             anchor not in anchors(dest.read_text(encoding="utf-8"))):
                problems.append(f"{page.name}: {target} (no heading #{anchor} in {dest.name})")
    return problems


def raw_defaults(params_text: str) -> dict[str, str]:
    """``section.key`` -> its value as written in params.yaml (comments stripped)."""
    values, section = {}, None
    for line in params_text.splitlines():
        if match := re.match(r"^(\w+):", line):
            section = match.group(1)
        elif section and (match := re.match(r'^  (\w+):\s*("[^"]*"|[^#]*?)\s*(#.*)?$', line)):
            values[f"{section}.{match.group(1)}"] = match.group(2)
    return values


def documented(doc_text: str) -> dict[str, list[str]]:
    """The rows of the reference tables: ``section.key`` -> the cells after the key."""
    rows = {}
    for line in _prose(doc_text):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and (match := re.fullmatch(r"`(\w+\.\w+)`", cells[0])):
            rows[match.group(1)] = cells[1:]
    return rows


def rerun_stages(dvc: dict) -> dict[str, list[str]]:
    """``section`` or ``section.key`` -> the stages whose ``params:`` list names it, in order."""
    stages: dict[str, list[str]] = {}
    for name, spec in dvc["stages"].items():
        for entry in spec.get("do", spec).get("params", []):  # a foreach stage: its do
            stages.setdefault(entry, []).append(name)
    return stages


def param_problems(params_text: str, doc_text: str, dvc: dict) -> list[str]:
    """What docs/params.md gets wrong about params.yaml and dvc.yaml: a key missing or unknown,
    a default that is not the file's, a *re-runs* cell that is not the stages of dvc.yaml."""
    raw, rows, declared = raw_defaults(params_text), documented(doc_text), rerun_stages(dvc)
    problems = [f"{key}: not in docs/params.md" for key in raw if key not in rows]
    problems += [f"{key}: documented, but not in params.yaml" for key in rows if key not in raw]
    for key, value in raw.items():
        if key not in rows:
            continue
        default, _, stages, *_ = rows[key] + ["", "", ""]
        if default != f"`{value}`":
            problems.append(f"{key}: documented default {default}, params.yaml has `{value}`")
        want = declared.get(key.split(".")[0], []) + declared.get(key, [])
        want = sorted(set(want), key=list(dvc["stages"]).index)
        if stages != (", ".join(want) or "none"):
            problems.append(f"{key}: documented re-runs {stages!r}, dvc.yaml says "
                            f"{', '.join(want) or 'none'!r}")
    return problems


# --- the documentation as it is -------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_every_param_is_documented_with_its_default_and_its_stages():
    params_text = (ROOT / "params.yaml").read_text()
    raw = raw_defaults(params_text)
    loaded = yaml.safe_load(params_text)
    # the raw reader sees exactly the keys and values YAML sees
    assert {f"{s}.{k}": v for s, keys in loaded.items() for k, v in keys.items()} == \
        {key: yaml.safe_load(value) for key, value in raw.items()}
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert param_problems(params_text, (ROOT / "docs" / "params.md").read_text(), dvc) == []


def test_the_readme_is_a_front_door_and_its_images_are_small():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    images = sorted((ROOT / "docs" / "images").glob("*.png"))
    assert images, "docs/images holds the README's and the docs' figures"
    limits = {"samples.png": 150_000}
    assert [p.name for p in images if p.stat().st_size > limits.get(p.name, 200_000)] == []


# --- the checks can fail --------------------------------------------------------------------

def test_slug_follows_githubs_rules():
    assert slug("Errors, interruptions and resume") == "errors-interruptions-and-resume"
    assert slug("`gan.init_from_vae` and the DAG") == "ganinit_from_vae-and-the-dag"
    assert slug("The fitted prior and the GAN's R1 (issue 18)") == \
        "the-fitted-prior-and-the-gans-r1-issue-18"
    assert slug("A - B") == "a---b"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_broken_links_are_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "target.md").write_text("# Target page\n\n## The `x.y` key's use\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/target.md) [ok](docs/target.md#the-xy-keys-use) [ok](#here) "
        "[web](https://example.org/x#y)\n"
        "## Here\n"
        "[gone](docs/missing.md) [bad anchor](docs/target.md#nowhere) [bad local](#there)\n"
        "`[in code](docs/missing.md)`\n"
        "```\n[in a block](docs/missing.md)\n```\n")
    assert broken_links(page) == [
        "README.md: docs/missing.md (no such file)",
        "README.md: docs/target.md#nowhere (no heading #nowhere in target.md)",
        "README.md: #there (no heading #there in README.md)",
    ]


def test_param_drift_is_reported():
    params_text = 'vae:\n  beta: 1.0   # KL weight\n  seed: 2\nreport:\n  title: "A: b"\n'
    dvc = {"stages": {"train_vae": {"params": ["vae"]}, "report": {"params": ["report"]}}}
    doc = ("| key | default | allowed | re-runs | meaning |\n|---|---|---|---|---|\n"
           "| `vae.beta` | `2.0` | float | train_vae | KL weight |\n"
           "| `report.title` | `\"A: b\"` | string | train_vae, report | the title \\| x |\n"
           "| `vae.old` | `1` | int | train_vae | gone |\n")
    assert param_problems(params_text, doc, dvc) == [
        "vae.seed: not in docs/params.md",
        "vae.old: documented, but not in params.yaml",
        "vae.beta: documented default `2.0`, params.yaml has `1.0`",
        "report.title: documented re-runs 'train_vae, report', dvc.yaml says 'report'",
    ]
