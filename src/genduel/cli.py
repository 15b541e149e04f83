"""The ``genduel`` command: images out of trained models, and the way to the report.

::

    genduel sample models/seeds/0/gan.pt -n 10000 --out samples/gan  # 000000.png ... 009999.png
    genduel sample models/seeds/0/vae.pt -n 64 --grid vae.png --image mean
    genduel sample models/seeds/0/vae_prior.pt -n 64 --grid vae_prior.png  # z from the GMM
    genduel export-real --split test --out samples/real        # the test images, same format
    genduel report --open

``sample`` draws exactly as the evaluate stage does (:func:`genduel.evaluate.samples.draw_samples`
with the model's own ``sample``, rounded to 8 bits): with ``--seed`` = ``eval.seed``,
``--batch-size`` = ``eval.batch_size`` and no ``--labels`` the files are evaluate's draw 0,
image for image. One 8-bit PNG per image (greyscale ``L`` or ``RGB``) is what the image
folder readers of torch-fidelity (``fidelity --input1 DIR1 --input2 DIR2 --fid``) and pytorch-fid
(``python -m pytorch_fid DIR1 DIR2``) take.

Checkpoints load with ``torch.load(weights_only=True)``
(:func:`genduel.checkpoint.load_checkpoint`). Every error a user can fix is one line
``genduel: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from genduel.checkpoint import load_checkpoint, rebuild
from genduel.config import VAE_IMAGES
from genduel.data.pixels import save_grid
from genduel.data.splits import SPLITS, load_split
from genduel.errors import DataError, GenDuelError
from genduel.evaluate.samples import draw_samples, subset
from genduel.models.gan import build_generator
from genduel.models.vae import build_vae
from genduel.runtime import progress

#: What ``sample`` decodes a VAE latent to unless ``--image`` says otherwise: ``eval.vae_image``
#: of the default params.yaml, so the files are the images the evaluate stage scores.
DEFAULT_VAE_IMAGE = "mode"
DEFAULT_REPORT = Path("reports/report.html")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``genduel: error: <what>; see `<prog> --help```."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"genduel: error: {message}; see `{self.prog} --help`\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _class(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a class number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a class number >= 0, got {value}")
    return value


def _labels(text: str) -> list[int]:
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected class numbers separated by commas (e.g. 0,3,7), got {text!r}") from None
    if not labels or min(labels) < 0:
        raise argparse.ArgumentTypeError(f"expected class numbers >= 0, got {text!r}")
    return labels


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise GenDuelError("--device cuda but no CUDA device is visible; use --device auto or cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- models
def load_sampler(path: Path, *, ema: bool | None = None,
                 image: str | None = None) -> tuple[torch.nn.Module, str]:
    """The network to sample from in a VAE or GAN checkpoint, and what it decodes to.

    Args:
        path: ``models/seeds/<seed>/vae.pt`` or ``.../gan.pt`` (or any checkpoint of those
            kinds).
        ema: GAN only. None: the net evaluate samples (``generator``: the EMA of G's weights
            when ``gan.ema_decay > 0``); True: that EMA net, an error without one; False: the raw
            weights (``generator_raw``, or ``generator`` when there is no EMA).
        image: VAE only: ``mode`` or ``mean`` (:meth:`genduel.models.vae.VAE.image`); None =
            :data:`DEFAULT_VAE_IMAGE`.

    Returns:
        (model in eval mode on the CPU, the VAE image kind or ``""`` for a GAN).

    Raises:
        DataError: missing, unreadable or wrong-kind file, weights that do not fit the config,
            or an option the checkpoint cannot honour.
    """
    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind") if isinstance(ckpt, dict) else None
    if kind not in ("vae", "gan"):
        raise DataError(f"{path} holds a '{kind}' checkpoint; genduel sample takes a VAE or GAN "
                        "checkpoint (models/seeds/0/vae.pt, models/seeds/0/gan.pt)")
    if kind == "vae":
        if ema is not None:
            raise DataError(f"{path} is a VAE checkpoint; --ema/--no-ema apply to GAN "
                            "checkpoints only")
        return _rebuild(path, ckpt, "vae", build_vae), image or DEFAULT_VAE_IMAGE
    if image is not None:
        raise DataError(f"{path} is a GAN checkpoint; --image applies to VAE checkpoints only")
    has_ema = "generator_raw" in ckpt.get("state_dicts", {})
    if ema and not has_ema:
        raise DataError(f"{path} has no EMA generator (trained with gan.ema_decay: 0); drop --ema")
    part = "generator_raw" if ema is False and has_ema else "generator"
    return _rebuild(path, ckpt, part, build_generator), ""


def _rebuild(path: Path, ckpt: dict[str, Any], part: str,
             build: Callable[[dict[str, Any]], torch.nn.Module]) -> torch.nn.Module:
    try:
        return rebuild(ckpt, part, build)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: its '{part}' weights do not fit its model config "
                        f"({exc.__class__.__name__}); re-run the stage that wrote it") from exc


def sample_images(model: Any, n: int, *, seed: int, batch_size: int, device: torch.device,
                  image: str = "", labels: Sequence[int] | None = None) -> torch.Tensor:
    """``n`` samples as uint8 ``(n, C, H, W)``, drawn as the evaluate stage draws them.

    ``labels`` (conditional models only) are cycled: image i gets ``labels[i % len(labels)]``;
    None lets a conditional model draw labels from its uniform prior, as evaluate does.
    """
    if labels is not None:
        if not model.conditional:
            raise DataError("--labels/--label need a conditional model; this one is "
                            "unconditional (drop the option)")
        if max(labels) >= model.num_classes:
            raise DataError(f"label {max(labels)} is out of range: the model has "
                            f"{model.num_classes} classes (0..{model.num_classes - 1})")
    model = model.to(device)
    ys = None if labels is None else torch.tensor(labels)[torch.arange(n) % len(labels)]
    chunks = iter(()) if ys is None else iter(ys.split(batch_size))  # one per batch, in order

    def sample(b: int, gen: torch.Generator) -> torch.Tensor:
        y = next(chunks, None)
        y = None if y is None else y.to(device)
        if image:  # a VAE
            return model.sample(b, generator=gen, labels=y, image=image)
        return model.sample(b, generator=gen, labels=y)

    return draw_samples(sample, (model,), n, batch_size, seed, device)


# ----------------------------------------------------------------------------- files
def write_pngs(images: torch.Tensor, out_dir: Path, *, force: bool = False) -> list[Path]:
    """One 8-bit PNG per uint8 image ``(N, C, H, W)``: ``000000.png``, ``000001.png``, ...

    Greyscale (``L``) for C = 1, ``RGB`` for C = 3. A folder that already holds PNG files is
    refused (a scorer would read the old files too) unless ``force``, which deletes them first.
    """
    from PIL import Image

    channels = images.shape[1]
    if channels not in (1, 3):
        raise DataError(f"images with {channels} channels cannot be written as PNG; "
                        "expected 1 (grey) or 3 (RGB)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is a file; --out takes a folder")
    old = sorted(out_dir.glob("*.png")) if out_dir.is_dir() else []
    if old and not force:
        raise DataError(f"{out_dir} already holds {len(old)} PNG files; choose a new folder or "
                        "pass --force to replace them")
    for path in old:
        path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(images) - 1)))
    arrays = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    paths = []
    for i, array in enumerate(progress(arrays, desc="writing PNGs", unit="img")):
        path = out_dir / f"{i:0{width}d}.png"
        Image.fromarray(array[:, :, 0] if channels == 1 else array).save(path)
        paths.append(path)
    return paths


def check_output(args: argparse.Namespace) -> None:
    """Before any image is drawn: ``--grid`` names a file, not a folder, and the folder that
    ``--out`` or ``--grid`` writes to can be created and written (by this user).

    Raises:
        DataError: one line naming the path and the option to change.
    """
    if args.grid is not None:
        if args.grid.is_dir():
            raise DataError(f"--grid {args.grid} is a folder; give a file name such as "
                            f"{args.grid / 'grid.png'}")
        _check_folder(args.grid.parent, "--grid")
    else:
        _check_folder(args.out, "--out")


def _check_folder(folder: Path, option: str) -> None:
    """``folder`` exists and is writable, or its nearest existing parent is a writable folder."""
    there = folder
    while not there.exists() and there != there.parent:
        there = there.parent
    if there.exists() and not there.is_dir():
        raise DataError(f"cannot write {folder}: {there} is a file, not a folder; choose another "
                        f"{option}")
    if not os.access(there, os.W_OK | os.X_OK):
        raise DataError(f"cannot write {folder}: permission denied on {there}; choose a folder "
                        f"you can write for {option}")


def _write(images: torch.Tensor, args: argparse.Namespace, nrow: int | None = None) -> str:
    c, h, w = images.shape[1:]
    what = f"{h}x{w} {'grey' if c == 1 else 'RGB'}"
    option, target = ("--grid", args.grid) if args.grid is not None else ("--out", args.out)
    try:
        if args.grid is not None:
            nrow = nrow or math.ceil(math.sqrt(len(images)))
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            save_grid(images, args.grid, nrow=nrow)
            return f"wrote a grid of {len(images)} {what} images ({nrow} per row) to {args.grid}"
        write_pngs(images, args.out, force=args.force)
    except OSError as exc:  # what check_output could not foresee (root, a full disk, a race)
        where = exc.filename or target
        raise DataError(f"cannot write {where}: {exc.strerror or exc.__class__.__name__}; "
                        f"choose a folder you can write for {option}") from exc
    return f"wrote {len(images)} {what} PNG files to {args.out}"


# ----------------------------------------------------------------------------- commands
def _cmd_sample(args: argparse.Namespace) -> int:
    labels = args.labels if args.labels is not None else (
        None if args.label is None else [args.label])
    check_output(args)
    model, image = load_sampler(args.checkpoint, ema=args.ema, image=args.image)
    images = sample_images(model, args.num, seed=args.seed, batch_size=args.batch_size,
                           device=_device(args.device), image=image, labels=labels)
    print(_write(images, args, nrow=len(labels) if labels and len(labels) > 1 else None))
    return 0


def _cmd_export_real(args: argparse.Namespace) -> int:
    check_output(args)
    split = load_split(args.data, args.split)
    n = len(split) if args.num is None else args.num
    print(_write(subset(split, n, args.seed), args))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.markdown:
        path = path.with_suffix(".md")
    if not path.is_file():
        raise DataError(f"{path} not found; build the report with `dvc repro` (or `make repro`)")
    if args.markdown:
        sys.stdout.write(path.read_text())
        return 0
    print(path)
    if args.open and not webbrowser.open(path.resolve().as_uri()):
        raise GenDuelError(f"no web browser could be started; open {path} yourself")
    return 0


def _add_output(cmd: argparse.ArgumentParser) -> None:
    out = cmd.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", type=Path, metavar="DIR",
                     help="folder for one PNG per image (000000.png, ...)")
    out.add_argument("--grid", type=Path, metavar="FILE.png", help="one PNG grid instead")
    cmd.add_argument("--force", action="store_true",
                     help="replace the PNG files already in --out")
    cmd.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")


def _add_sample(commands: Any) -> None:
    sample = commands.add_parser(
        "sample", help="write N sampled images as PNG files (or one grid)",
        description="Draw N images from a VAE or GAN checkpoint (models/seeds/<seed>/vae.pt, "
                    "gan.pt) as 8-bit PNG files that torch-fidelity's and pytorch-fid's command "
                    "lines can score.")
    sample.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                        help="models/seeds/<seed>/vae.pt, vae_prior.pt or gan.pt")
    sample.add_argument("-n", "--num", type=_positive_int, required=True, metavar="N",
                        help="number of images")
    _add_output(sample)
    which = sample.add_mutually_exclusive_group()
    which.add_argument("--labels", type=_labels, metavar="0,3,7",
                       help="conditional models: classes, cycled over the images")
    which.add_argument("--label", type=_class, metavar="K", help="conditional models: one class")
    ema = sample.add_mutually_exclusive_group()
    ema.add_argument("--ema", dest="ema", action="store_true", default=None,
                     help="GAN: the EMA generator (the default when it exists)")
    ema.add_argument("--no-ema", dest="ema", action="store_false",
                     help="GAN: the raw generator weights")
    sample.add_argument("--image", choices=VAE_IMAGES, default=None,
                        help=f"VAE: what a latent decodes to (default {DEFAULT_VAE_IMAGE}, "
                             "as evaluate)")
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.add_argument("--batch-size", type=_positive_int, default=500,
                        help="images per forward pass (default 500, as eval.batch_size)")
    sample.set_defaults(run=_cmd_sample)


def _add_export_real(commands: Any) -> None:
    real = commands.add_parser(
        "export-real", help="write real images of a prepared split as PNG files",
        description="Write the images of a prepared split (data/prepared/<split>.pt) in the "
                    "format of `genduel sample`: the real side of an FID.")
    real.add_argument("--data", type=Path, default=Path("data/prepared"),
                      help="prepared splits (default data/prepared)")
    real.add_argument("--split", choices=SPLITS, default="test")
    real.add_argument("-n", "--num", type=_positive_int, default=None, metavar="N",
                      help="a seeded random subset of N images (default: all)")
    _add_output(real)
    real.set_defaults(run=_cmd_export_real)


def _add_report(commands: Any) -> None:
    report = commands.add_parser("report", help="print the report's path (or open it)",
                                 description="Print the path of the HTML report, or open it.")
    report.add_argument("--path", type=Path, default=DEFAULT_REPORT,
                        help=f"the HTML report (default {DEFAULT_REPORT})")
    how = report.add_mutually_exclusive_group()
    how.add_argument("--open", action="store_true", help="open it in the web browser")
    how.add_argument("--markdown", action="store_true",
                     help="print the Markdown report (report.md beside it) instead")
    report.set_defaults(run=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """The ``genduel`` parser: one subcommand per ``_add_*`` function, each with its ``run``."""
    parser = _Parser(prog="genduel", description="GenDuel from the command line: sample "
                     "images from a trained VAE or GAN, export real images, find the report.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_sample, _add_export_real, _add_report):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genduel`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="genduel: %(levelname)s: %(message)s")
    try:
        return args.run(args)
    except GenDuelError as exc:
        sys.stderr.write(f"genduel: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("genduel: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
