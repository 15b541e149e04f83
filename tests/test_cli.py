"""The ``genduel`` command, run as a user runs it: tiny models trained in-process, the command
line through its entry point (``genduel.cli:main``, in this process as the console script calls
it; the console script itself in a subprocess where that matters: ``--help``, a terminal, a
browser), the files it writes read back with PIL and with torch-fidelity."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genduel.checkpoint import load_checkpoint, rebuild, save_checkpoint
from genduel.config import GANConfig, VAEConfig
from genduel.data.pixels import to_uint8
from genduel.data.splits import Split
from genduel.evaluate.samples import draw_samples
from genduel.models.gan import Generator, build_generator
from genduel.models.vae import build_vae
from genduel.runtime import eval_mode, make_generator
from genduel.tracking.base import RecordingTracker
from genduel.train import loop
from genduel.train.gan import train_gan
from genduel.train.vae import train_vae

SCRIPT = Path(sysconfig.get_path("scripts")) / "genduel"
CPU = torch.device("cpu")
GAN = GANConfig(latent_dim=8, width=4, batch_size=8, log_every=2, grid_images=4, epochs=2,
                diag_samples=0, ema_decay=0.9, conditional=True)


def _split(n: int, seed: int, classes: int = 3) -> Split:
    low = torch.rand(n, 1, 7, 7, generator=torch.Generator().manual_seed(seed))
    images = (torch.nn.functional.interpolate(low, size=(28, 28), mode="bilinear") * 255)
    return Split(images.round().to(torch.uint8), torch.arange(n) % classes,
                 [f"c{i}" for i in range(classes)])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """vae.pt (unconditional, 5-component mixture), gan.pt (conditional, with EMA), both trained
    for a few steps; gan_no_ema.pt (the checkpoint layout of an untrained G without EMA); and
    judge.pt, a checkpoint of the wrong kind."""
    root = tmp_path_factory.mktemp("cli")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets (see conftest._one_thread, which is per test)
    torch.manual_seed(0)
    vae_cfg = VAEConfig(latent_dim=4, width=8, epochs=1, batch_size=32, log_every=1,
                        grid_images=4, decoder_components=5)
    train_vae(vae_cfg, _split(64, 1), _split(16, 2), device=CPU, amp=False,
              tracker=RecordingTracker(), checkpoint_path=root / "vae.pt",
              artifacts_dir=root / "art_vae")
    train_gan(GAN, _split(40, 3), device=CPU, amp=False, tracker=RecordingTracker(),
              checkpoint_path=root / "gan.pt", artifacts_dir=root / "art_gan")
    plain = dataclasses.replace(GAN, ema_decay=0.0, conditional=False)
    G = Generator(plain, (1, 28, 28))
    loop.save_state(root / "gan_no_ema.pt", kind="gan", model_config=G.model_config(),
                    nets={"generator": G}, optimizers={}, progress=loop.Progress(), epoch=0,
                    extra={})
    judge = load_checkpoint(root / "gan.pt")
    save_checkpoint(root / "judge.pt", {**judge, "kind": "judge"})
    (root / "truncated.pt").write_bytes((root / "gan.pt").read_bytes()[:500])
    torch.set_num_threads(threads)
    return {p.stem: p for p in root.glob("*.pt")}


def genduel_script(*args: object, cwd: Path | None = None,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``genduel ARGS``: the installed console script in a subprocess."""
    assert SCRIPT.is_file(), f"{SCRIPT} missing: reinstall with `pip install -e .`"
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def genduel(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``genduel ARGS`` as the console script runs it (``sys.exit(genduel.cli.main())``), in
    this process: a subprocess spends seconds importing torch on every call. What the script
    would print goes to the result's stdout and stderr as it would in a fresh process: the
    logging that ``main`` sets up and Python's warnings (the default filters) included."""
    from genduel import cli

    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []  # as in a fresh process: main's basicConfig installs its handler
    try:
        with contextlib.chdir(cwd or Path.cwd()), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["genduel", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())


def _pngs(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("*.png"))
    arrays = []
    for f in files:
        with Image.open(f) as im:
            assert (im.size, im.mode) == ((28, 28), "L"), f
            arrays.append(np.asarray(im))
    return arrays


def test_help_lists_the_commands():
    result = genduel_script("--help")  # the installed console script itself
    assert result.returncode == 0
    for command in ("sample", "export-real", "report"):
        assert command in result.stdout


def test_vae_samples_are_the_evaluate_draw_and_depend_on_the_seed_alone(models, tmp_path):
    result = genduel("sample", models["vae"], "-n", 7, "--out", tmp_path / "a", "--seed", 4,
                     "--batch-size", 3)
    assert result.returncode == 0, result.stderr
    assert "wrote 7 28x28 grey PNG files" in result.stdout
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [f"{i:06d}.png" for i in range(7)]
    # what the evaluate stage draws with eval.seed 4, eval.batch_size 3, eval.vae_image mode
    vae = rebuild(load_checkpoint(models["vae"]), "vae", build_vae)
    expected = draw_samples(lambda n, g: vae.sample(n, generator=g, image="mode"), (vae,), 7, 3,
                            4, CPU)
    assert np.array_equal(np.stack(_pngs(tmp_path / "a")), expected[:, 0].numpy())

    assert genduel("sample", models["vae"], "-n", 7, "--out", tmp_path / "b", "--seed", 4,
                   "--batch-size", 3).returncode == 0
    assert genduel("sample", models["vae"], "-n", 7, "--out", tmp_path / "c", "--seed", 5,
                   "--batch-size", 3, "--image", "mean").returncode == 0
    same = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names]
    other = [(tmp_path / "a" / n).read_bytes() == (tmp_path / "c" / n).read_bytes() for n in names]
    assert all(same) and not any(other)


def test_gan_labels_and_ema_select_what_the_library_computes(models, tmp_path):
    ckpt = load_checkpoint(models["gan"])
    nets = {part: rebuild(ckpt, part, build_generator) for part in ("generator", "generator_raw")}
    z = torch.randn(6, GAN.latent_dim, generator=make_generator(11))  # what seed 11 draws first

    def expected(part: str, labels: list[int]) -> np.ndarray:
        with eval_mode(nets[part]):
            return to_uint8(nets[part](z, torch.tensor(labels)))[:, 0].numpy()

    runs = {"ema": ("--labels", "0,2", "--ema"), "raw": ("--labels", "0,2", "--no-ema"),
            "one": ("--label", "1")}
    for name, options in runs.items():
        result = genduel("sample", models["gan"], "-n", 6, "--out", tmp_path / name, "--seed", 11,
                         *options)
        assert result.returncode == 0, result.stderr
    got = {name: np.stack(_pngs(tmp_path / name)) for name in runs}
    assert np.array_equal(got["ema"], expected("generator", [0, 2, 0, 2, 0, 2]))
    assert np.array_equal(got["raw"], expected("generator_raw", [0, 2, 0, 2, 0, 2]))
    assert np.array_equal(got["one"], expected("generator", [1] * 6))
    assert not np.array_equal(got["ema"], got["raw"])  # EMA and raw weights differ
    assert not np.array_equal(got["ema"][1::2], got["one"][1::2])  # the label matters


def test_grid_is_one_png_of_the_grid_size(models, tmp_path):
    result = genduel("sample", models["gan"], "-n", 6, "--labels", "0,1,2", "--grid",
                     tmp_path / "g" / "grid.png")
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.rglob("*.png")) == [tmp_path / "g" / "grid.png"]
    with Image.open(tmp_path / "g" / "grid.png") as im:
        # torchvision's make_grid: 3 per row (one per label), 2 rows, 2-pixel padding
        assert im.size == (3 * 30 + 2, 2 * 30 + 2)


def test_torch_fidelity_reads_the_folder_as_uint8_images(models, tmp_path):
    from torch_fidelity.utils import prepare_input_from_id

    assert genduel("sample", models["vae"], "-n", 5, "--out", tmp_path).returncode == 0
    dataset = prepare_input_from_id(1, input1=str(tmp_path), verbose=False)
    assert len(dataset) == 5
    grey = _pngs(tmp_path)
    for i in range(5):
        item = dataset[i]  # what torch-fidelity feeds its feature extractors
        assert item.dtype == torch.uint8 and item.shape == (3, 28, 28)
        assert all(np.array_equal(item[c].numpy(), grey[i]) for c in range(3))


def test_export_real_writes_a_seeded_subset_of_a_split(tmp_path):
    split = _split(12, 0)
    (tmp_path / "prepared").mkdir()
    torch.save({"images": split.images, "labels": split.labels, "classes": split.classes},
               tmp_path / "prepared" / "test.pt")
    result = genduel("export-real", "--data", tmp_path / "prepared", "-n", 4, "--out",
                     tmp_path / "real")
    assert result.returncode == 0, result.stderr
    perm = torch.randperm(12, generator=make_generator(0))[:4]
    assert np.array_equal(np.stack(_pngs(tmp_path / "real")), split.images[perm, 0].numpy())


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "not found"),
    ("truncated", "not a readable PyTorch file"),
    ("judge", "holds a 'judge' checkpoint"),
    ("labels_unconditional", "need a conditional model"),
    ("label_out_of_range", "label 3 is out of range"),
    ("ema_without_ema", "has no EMA generator"),
    ("n_zero", "must be at least 1, got 0"),
    ("occupied_out", "already holds 1 PNG files"),
])
def test_bad_input_is_one_line_and_exit_2(models, tmp_path, case, message):
    out = tmp_path / "out"
    args = {
        "missing": (tmp_path / "nope.pt", "-n", 2),
        "truncated": (models["truncated"], "-n", 2),
        "judge": (models["judge"], "-n", 2),
        "labels_unconditional": (models["vae"], "-n", 2, "--labels", "1"),
        "label_out_of_range": (models["gan"], "-n", 2, "--label", "3"),
        "ema_without_ema": (models["gan_no_ema"], "-n", 2, "--ema"),
        "n_zero": (models["vae"], "-n", 0),
        "occupied_out": (models["vae"], "-n", 2),
    }[case]
    if case == "occupied_out":
        out.mkdir()
        (out / "old.png").write_bytes(b"")
    result = genduel("sample", *args, "--out", out)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("genduel: error: ")
    assert message in result.stderr
    assert not list(out.glob("0*.png"))  # nothing written


def test_an_output_that_cannot_be_written_is_one_line_before_sampling(models, tmp_path):
    afile, folder = tmp_path / "file", tmp_path / "grids"
    afile.write_text("not a folder\n")
    folder.mkdir()
    for args, says in [
        (("--out", afile / "out"), f"cannot write {afile / 'out'}: {afile} is a file, not a "
                                   "folder; choose another --out"),
        (("--grid", folder), f"--grid {folder} is a folder; give a file name such as "
                             f"{folder / 'grid.png'}"),
        (("--grid", afile / "g.png"), f"cannot write {afile}: {afile} is a file, not a folder; "
                                      "choose another --grid"),
    ]:
        result = genduel("sample", models["vae"], "-n", 2, *args)
        assert (result.returncode, result.stderr) == (2, f"genduel: error: {says}\n")
    assert list(folder.iterdir()) == [] and afile.read_text() == "not a folder\n"


def test_a_folder_without_write_permission_is_one_line(models, tmp_path, monkeypatch, capsys):
    from genduel import cli

    locked, real = tmp_path / "locked", os.access
    locked.mkdir()  # the tests run as root, who may write anywhere: os.access says no instead
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real(p, mode))
    assert cli.main(["sample", str(models["vae"]), "-n", "2", "--out", str(locked / "o")]) == 2
    assert capsys.readouterr().err == (
        f"genduel: error: cannot write {locked / 'o'}: permission denied on {locked}; choose a "
        "folder you can write for --out\n")
    assert list(locked.iterdir()) == []


def test_a_write_refused_midway_is_one_line(models, tmp_path, monkeypatch, capsys):
    from genduel import cli

    def refuse(image, fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image.Image, "save", refuse)
    assert cli.main(["sample", str(models["vae"]), "-n", "2", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        f"genduel: error: cannot write {tmp_path / 'o' / '000000.png'}: Permission denied; "
        "choose a folder you can write for --out\n")


def test_report_prints_its_path_or_says_how_to_build_it(tmp_path):
    missing = genduel("report", cwd=tmp_path)
    assert missing.returncode == 2 and "dvc repro" in missing.stderr
    assert missing.stderr.count("\n") == 1
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.html").write_text("<html></html>")
    (tmp_path / "reports" / "report.md").write_text("# The report\n")
    found = genduel("report", cwd=tmp_path)
    assert found.returncode == 0 and found.stdout == "reports/report.html\n"
    assert genduel("report", "--markdown", cwd=tmp_path).stdout == "# The report\n"
    # --open hands the file's URI to the browser that $BROWSER names (webbrowser's rule)
    browser = f"{sys.executable} -c 'import sys; open(\"opened\", \"w\").write(sys.argv[1])' %s"
    opened = genduel_script("report", "--open", cwd=tmp_path,
                            env={**os.environ, "BROWSER": browser})
    assert opened.returncode == 0, opened.stderr
    uri = (tmp_path / "reports" / "report.html").resolve().as_uri()
    assert (tmp_path / "opened").read_text() == uri


def _stderr_through_a_terminal(args: list[str]) -> str:
    """Run ``args`` with stderr on a pseudo-terminal (what a person's shell gives it)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # 24 rows, 100 columns: a new pty is 0 wide, and tqdm draws nothing in 0 columns
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_show_on_a_terminal_and_stay_out_of_logs(models, tmp_path):
    args = ["sample", models["vae"], "-n", 40, "--batch-size", 8]
    shown = _stderr_through_a_terminal([str(SCRIPT), *map(str, args), "--out", tmp_path / "t"])
    assert "sampling:" in shown and "writing PNGs:" in shown and "/40 [" in shown
    piped = genduel_script(*args, "--out", tmp_path / "p")
    assert piped.returncode == 0 and piped.stderr == ""
