"""The README's headline: the grids composed side by side, the table, the README rewrite."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from genduel.errors import DataError
from genduel.report.headline import (
    COLUMNS,
    PANELS,
    TABLE_END,
    TABLE_START,
    Panel,
    compose,
    headline_table,
    main,
    replace_table,
)


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_compose_puts_each_grid_under_its_label_side_by_side():
    grids = [Panel("A", _png((10, 10), (0, 0, 0))), Panel("B", _png((12, 8), (90, 90, 90)))]
    gap, font = 4, 10
    img = Image.open(io.BytesIO(compose(grids, scale=2, gap=gap, font_size=font)))
    assert img.mode == "L"  # grey grids make a grey image
    label_h = font + gap // 2 + 4
    assert img.size == (gap + 20 + gap + 24 + gap, label_h + 20 + 2 * gap)
    top = gap + label_h
    # every pixel of each enlarged grid is where it belongs, with white between them
    assert set(img.crop((gap, top, gap + 20, top + 20)).getdata()) == {0}
    second = gap + 20 + gap
    assert set(img.crop((second, top, second + 24, top + 16)).getdata()) == {90}
    assert set(img.crop((second, top + 16, second + 24, top + 20)).getdata()) == {255}
    assert set(img.crop((gap + 20, top, second, top + 20)).getdata()) == {255}
    # the labels are drawn above the grids
    assert min(img.crop((0, 0, img.width, top)).getdata()) < 128


def test_compose_keeps_colour_and_refuses_nothing_to_compose():
    img = Image.open(io.BytesIO(compose([Panel("rgb", _png((6, 6), (200, 10, 10)))])))
    assert img.mode == "RGB"
    with pytest.raises(ValueError):
        compose([])


def _evals() -> dict:
    base = {"fid": 185.4986, "fid_std": 1.6182, "kid": 6.6742, "inception_score": 4.4763,
            "precision": 0.6402, "recall": 0.2306, "classes_well_covered": 10.0}
    vae = {**base, "fid": 324.4151, "fid_std": 0.3062, "bits_per_dim": 3.44229,
           "iwae_k100_bits_per_dim": 3.40978, "classes_well_covered": 9.3333}
    return {"vae": vae, "vae_prior": vae, "gan": base, "class_gaussians": base,
            "real": {**base, "fid": 1.4848, "fid_std": 0.0, "kid": 0.0063, "recall": 0.098}}


def test_headline_table_formats_the_numbers_and_names_what_is_missing():
    lines = headline_table(_evals()).splitlines()
    assert lines[0] == "| metric | better | " + " | ".join(t for _, t in COLUMNS) + " |"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert rows["FID (judge)"][:2] == ["lower", "324.4 ± 0.3"]
    assert rows["FID (judge)"][4] == "1.5"  # no ± where the draws agree exactly
    assert rows["KID (judge)"][4] == "0.0063"  # small numbers keep 2 significant digits
    assert rows["Inception Score (judge)"][0] == "higher"
    assert rows["Precision / recall"][4] == "0.64 / 0.098"
    assert rows["Classes well covered (of 10)"][1:4] == ["9.3", "9.3", "10"]
    elbo = rows["Test ELBO (bits/dim)"]
    assert elbo[1:] == ["3.442", "3.442", "no likelihood", "–", "– |"]


def test_replace_table_rewrites_only_between_the_markers():
    text = f"intro\n{TABLE_START}\nold | table\n{TABLE_END}\nafter\n"
    assert replace_table(text, "| new |") == f"intro\n{TABLE_START}\n| new |\n{TABLE_END}\nafter\n"
    with pytest.raises(DataError, match="markers"):
        replace_table("no markers here", "| new |")


def test_main_writes_the_image_and_the_table(tmp_path, capsys):
    outputs = tmp_path / "run"
    for i, (_, rel) in enumerate(PANELS):
        (outputs / rel).parent.mkdir(parents=True, exist_ok=True)
        (outputs / rel).write_bytes(_png((8, 8), (i * 40,) * 3))
    (outputs / "metrics").mkdir()
    for name, metrics in _evals().items():
        (outputs / "metrics" / f"eval_{name}.json").write_text(json.dumps(metrics))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{TABLE_START}\n{TABLE_END}\n")
    image = tmp_path / "docs" / "samples.png"
    argv = ["--outputs", str(outputs), "--image", str(image), "--readme", str(readme)]
    assert main(argv) == 0
    assert Image.open(image).size[0] > 4 * 8
    assert "| FID (judge) | lower | 324.4 ± 0.3 |" in readme.read_text()
    gan_grid = dict(PANELS)["GAN"]
    assert gan_grid == "eval/seeds/0/samples_gan.png"  # training seed 0's evaluate writes it
    (outputs / gan_grid).unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genduel headline: error: ") and gan_grid in err
