"""Typed, validated parameters: one frozen dataclass per ``params.yaml`` section.

Every section is validated once, at a stage's entry, by :func:`load_all`. Unknown keys, wrong
types and out-of-range values raise :class:`ConfigError` with one line naming the key, the value and
what is allowed. Library code receives these objects, never a dict.

Each field may carry ``metadata`` with ``choices`` (allowed values), ``min``/``max`` (inclusive
bounds) or ``gt`` (strict lower bound); :func:`validate` enforces them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from genduel.errors import ConfigError

T = TypeVar("T")

#: The GAN objectives ``gan.loss`` may name; the first two train D with binary cross-entropy.
GAN_LOSSES = ("minimax", "non_saturating", "wgan_gp", "hinge")
BCE_LOSSES = GAN_LOSSES[:2]
#: What a VAE sample is (``eval.vae_image``; :meth:`genduel.models.vae.VAE.image`).
VAE_IMAGES = ("mean", "mode")


def _f(default: Any, *, choices: tuple | None = None, min: float | None = None,
       max: float | None = None, gt: float | None = None, help: str = "") -> Any:
    """A dataclass field with validation metadata (lists are copied per instance)."""
    meta = {"choices": choices, "min": min, "max": max, "gt": gt, "help": help}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how tensors are computed; shared by every stage that runs a network."""

    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    amp: bool = _f(False, help="bf16 autocast on CUDA; ignored on the CPU")
    num_threads: int = _f(0, min=0, help="torch intra-op threads; 0 = torch's default")
    nproc_per_node: int = _f(1, min=1, help="training processes per machine (torchrun, one per "
                             "GPU); > 1 runs judge, train_vae and train_gan data-parallel")
    nnodes: int = _f(1, min=1, help="machines of a data-parallel training run")
    node_rank: int = _f(0, min=0, help="this machine's index, 0 .. nnodes - 1")
    rdzv_endpoint: str = _f("", help="host:port of node 0's rendezvous; '' = localhost with a "
                            "free port (one node only)")
    checkpoint_every_s: float = _f(120.0, gt=0.0, help="seconds between saves of a training "
                                   "stage's resume state within an epoch (it is also saved at "
                                   "every epoch's end); one process only")
    seeds: list = _f([0], help="training seeds: the VAE, its prior and the GAN are trained and "
                     "evaluated once per seed (DVC stages train_vae@<seed>, ...), the judge "
                     "once; seed s trains with each section's seed + s (:func:`for_seed`)")
    concurrent_seeds: int = _f(1, min=1, help="seeds of one model that train at once: a per-seed "
                               "training stage that DVC runs also trains the next stale seeds "
                               "beside it (genduel.seedpool; on a GPU, one per visible GPU "
                               "round robin); 1 = one at a time; changes no result")

    @property
    def world_size(self) -> int:
        """Training processes in all: ``nproc_per_node * nnodes``."""
        return self.nproc_per_node * self.nnodes


@dataclass(frozen=True)
class DataConfig:
    """The prepare stage: which dataset, how it is split and (optionally) shrunk."""

    dataset: str = _f("fashion_mnist", choices=("fashion_mnist", "mnist", "cifar10"))
    val_size: int = _f(5000, min=1)
    train_limit: int = _f(0, min=0, help="keep only this many training images; 0 = all")
    seed: int = _f(0, min=0)
    verify_checksums: bool = _f(True, help="compare source files with the published checksums")
    allow_download: bool = _f(True, help="download through torchvision when no local copy exists")
    grid_images: int = _f(64, min=1, max=1024)


@dataclass(frozen=True)
class JudgeConfig:
    """The judge classifier whose features and class probabilities feed FID, IS and friends."""

    epochs: int = _f(3, min=1)
    batch_size: int = _f(128, min=1)
    lr: float = _f(2e-3, gt=0.0)
    weight_decay: float = _f(1e-4, min=0.0)
    width: int = _f(32, min=4, help="channels of the first conv block; doubled per block")
    feature_dim: int = _f(256, min=16, max=2048, help="penultimate-layer width (FID features)")
    dropout: float = _f(0.25, min=0.0, max=0.9)
    log_every: int = _f(20, min=1, help="steps between logged training metrics")
    max_loss: float = _f(1e3, gt=0.0, help="a training loss beyond this (cross-entropy, nats) "
                         "is divergence: the stage stops with an error")
    seed: int = _f(1, min=0)


@dataclass(frozen=True)
class VAEConfig:
    """Convolutional VAE with a discretized-logistic decoder on 8-bit pixels."""

    latent_dim: int = _f(16, min=1)
    width: int = _f(32, min=4, help="channels of the first conv block; doubled per block")
    epochs: int = _f(4, min=1)
    batch_size: int = _f(128, min=1)
    lr: float = _f(1e-3, gt=0.0)
    beta: float = _f(1.0, min=0.0, help="KL weight; 1 is the ELBO")
    mc_samples: int = _f(1, min=1, help="L Monte Carlo samples of z per input")
    decoder_components: int = _f(1, min=1, max=32, help="discretized logistics per pixel in "
                                 "p(x | z); 1 = one logistic, K > 1 = a mixture of K")
    kl_warmup_epochs: float = _f(0.0, min=0.0, help="epochs over which the KL weight ramps "
                                 "linearly from 0 to beta; 0 = no warm-up")
    conditional: bool = _f(False, help="CVAE: encoder and decoder also see the class label")
    log_every: int = _f(10, min=1, help="steps between logged training metrics")
    max_loss: float = _f(1e6, gt=0.0, help="a training loss beyond this (negative ELBO, nats "
                         "per image) is divergence: the stage stops with an error")
    grid_images: int = _f(64, min=1, max=1024)
    seed: int = _f(2, min=0)


@dataclass(frozen=True)
class GANConfig:
    """DCGAN-style generator and discriminator trained with Algorithm 1 of Goodfellow et al."""

    latent_dim: int = _f(64, min=1)
    width: int = _f(24, min=4, help="generator channels of the first conv block; doubled per "
                    "block")
    d_width: int = _f(0, min=0, help="discriminator channels of its first conv block; 0 = width")
    g_arch: str = _f("deconv", choices=("deconv", "resize"), help="how G doubles the resolution: "
                     "deconv = 4x4 stride-2 transposed convs (DCGAN); resize = nearest-neighbour "
                     "upsampling + 3x3 convs (no checkerboard, Odena et al. 2016)")
    g_extra_convs: int = _f(0, min=0, max=8, help="3x3 conv layers (BatchNorm, ReLU) G adds at "
                            "half resolution, between its two upsamplings")
    spectral_norm: bool = _f(False, help="spectral normalization of every D layer (Miyato et "
                             "al. 2018); D then has no BatchNorm")
    ema_decay: float = _f(0.0, min=0.0, max=0.9999, help="exponential moving average of G's "
                          "weights, sampled and evaluated when > 0; 0 = off")
    epochs: int = _f(4, min=1)
    batch_size: int = _f(128, min=1)
    loss: str = _f("non_saturating", choices=GAN_LOSSES)
    gp_weight: float = _f(10.0, min=0.0, help="lambda of the WGAN-GP gradient penalty")
    r1_weight: float = _f(0.0, min=0.0, help="gamma of the R1 penalty gamma/2 E||grad_x l(x)||^2 "
                          "on real images (Mescheder et al. 2018); 0 = off; not with wgan_gp")
    r1_every: int = _f(1, min=1, help="apply R1 on the D updates of every r1_every-th generator "
                       "step only, weighted r1_every times (lazy regularization, Karras et al. "
                       "2020): the same penalty on average at a fraction of its cost")
    d_steps: int = _f(1, min=1, help="k discriminator (critic) steps per generator step")
    optimizer: str = _f("adam", choices=("adam", "sgd_momentum"))
    lr_g: float = _f(2e-4, gt=0.0)
    lr_d: float = _f(2e-4, gt=0.0)
    beta1: float = _f(0.5, min=0.0, max=0.999, help="Adam only")
    beta2: float = _f(0.999, min=0.0, max=0.9999, help="Adam only")
    momentum: float = _f(0.5, min=0.0, max=0.999, help="sgd_momentum only")
    conditional: bool = _f(False, help="class-conditional G and D")
    init_from_vae: bool = _f(False, help="G starts from the trained VAE decoder (stage gan_init)")
    diag_samples: int = _f(2000, min=0, help="samples saved per epoch for the class-coverage "
                           "diagnostic; 0 = none")
    log_every: int = _f(10, min=1, help="steps between logged training metrics")
    max_loss: float = _f(1e4, gt=0.0, help="|d_loss| or |g_loss| beyond this is divergence: "
                         "the stage stops with an error")
    grid_images: int = _f(64, min=1, max=1024)
    seed: int = _f(3, min=0)


#: The fitted latent priors ``prior.kind`` may name (:mod:`genduel.models.prior`).
PRIOR_KINDS = ("gmm",)
#: What the prior is fitted to (``prior.fit_on``): one latent per training image.
PRIOR_FIT_ON = ("mean", "sample")


@dataclass(frozen=True)
class PriorConfig:
    """The VAE's second stage: a density fitted to its aggregate posterior q(z) = E_x q(z | x)
    (ex-post density estimation, Ghosh et al. 2020; two-stage VAE, Dai & Wipf 2019)."""

    kind: str = _f("gmm", choices=PRIOR_KINDS, help="gmm: a full-covariance Gaussian mixture")
    components: list = _f([25, 50], help="candidate numbers of mixture components; the one "
                          "whose fit gives the validation latents the highest log-likelihood "
                          "is kept")
    fit_on: str = _f("mean", choices=PRIOR_FIT_ON, help="mean: the posterior means mu(x); "
                     "sample: one draw z ~ q(z | x) per image")
    temperature: float = _f(1.4, gt=0.0, help="every component's covariance is scaled by "
                            "temperature^2 after the fit: > 1 draws more diverse latents; the "
                            "bounds are those of the scaled density")
    train_images: int = _f(20000, min=0, help="the first training images, whose latents are "
                           "fitted; 0 = all")
    max_iter: int = _f(100, min=1, help="EM iterations at most per fit")
    reg_covar: float = _f(1e-4, gt=0.0, help="added to each covariance's diagonal: keeps a "
                          "component from collapsing onto a few latents")
    seed: int = _f(5, min=0)


@dataclass(frozen=True)
class EvalConfig:
    """The evaluate stage: sample counts, seeds and likelihood bounds."""

    num_samples: int = _f(10000, min=2, help="samples drawn from each model per draw")
    draws: int = _f(3, min=1, help="independent sample draws; metrics are mean +- std over them")
    batch_size: int = _f(500, min=1)
    seed: int = _f(4, min=0)
    is_splits: int = _f(10, min=1)
    kid_subsets: int = _f(100, min=1)
    kid_subset_size: int = _f(1000, min=2)
    pr_k: int = _f(3, min=1, help="neighbourhood size of the k-NN precision/recall manifolds")
    dc_k: int = _f(5, min=1, help="neighbourhood size of the real k-NN balls of density/coverage")
    iwae_k: list = _f([1, 10, 100], help="importance samples per IWAE bound")
    likelihood_images: int = _f(1000, min=0, help="test images for IWAE bounds; 0 = all")
    inception_weights: str = _f("", help="path to Inception-v3 weights; empty = judge only")
    inception_samples: int = _f(1000, min=2, help="images per set for the Inception metrics")
    parzen_samples: int = _f(10000, min=1, help="kernel centres from draw 0 (capped at "
                             "num_samples); the real row uses as many train images")
    parzen_val_images: int = _f(1000, min=1, help="val images that choose the Parzen sigma")
    parzen_test_images: int = _f(1000, min=1, help="test images the Parzen LL is averaged over")
    parzen_sigmas: list = _f([0.1, 0.13, 0.16, 0.2, 0.25, 0.3],
                             help="Parzen kernel widths tried, pixels in [0, 1]")
    probe_train_images: int = _f(5000, min=1, help="train images the VAE latent probes learn from")
    probe_knn_k: int = _f(5, min=1, help="neighbours of the k-NN probe on VAE posterior means")
    vae_image: str = _f("mean", choices=VAE_IMAGES, help="what a VAE sample is: the "
                        "decoder mean, or per pixel the mean of its most probable mixture "
                        "component")
    memorization_samples: int = _f(2000, min=2, help="samples (and test images) matched to "
                                   "their nearest train image by the memorization check")


@dataclass(frozen=True)
class ReportConfig:
    """The report stage."""

    title: str = _f("GenDuel: VAE vs GAN")


@dataclass(frozen=True)
class TrackingConfig:
    """Where MLflow runs go. Not a dependency of any stage: it does not change results."""

    uri: str = _f("", help="'' = embedded sqlite store at the repo root (or $MLFLOW_TRACKING_URI); "
                           "else a URI of the form tracking_uri_problem accepts")
    experiment: str = _f("genduel")
    timeout_s: float = _f(10.0, gt=0.0, help="seconds before an unreachable server is an error")
    log_models: bool = _f(True)


#: Database schemes of MLflow's SQLAlchemy store (``postgresql+psycopg2://`` and such too).
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
#: The forms of a tracking URI, for the message that refuses another one.
TRACKING_URI_FORMS = ("'' for the local store, http(s)://host[:port] for a server, "
                      "sqlite:///path/to/mlflow.db, postgresql://user@host[:port]/db or a "
                      "folder path")

_BAD_PORT = "its port is not a number from 1 to 65535"


def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with the form of a tracking URI, or None when MLflow can open that form:
    ``''``, a folder path or ``file:`` URI, ``http(s)://host[:port]``, ``sqlite:///<file>``,
    ``postgresql|mysql|mssql[+driver]://...@host...``, ``databricks[://profile]``. Only the
    form: whether the server answers is checked when a stage opens the store."""
    if not uri:
        return None
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, a bad IPv6 address
        return _BAD_PORT if "Port" in str(exc) else str(exc)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        return None if parts.path else "no path"
    if scheme in ("http", "https"):
        if not parts.hostname:
            return f"no host after {scheme}://"
        return _BAD_PORT if port == 0 else None
    if scheme.split("+", 1)[0] in _DATABASES:
        if scheme.startswith("sqlite"):
            return None if not parts.netloc and parts.path not in ("", "/") else (
                "sqlite needs a file: sqlite:///relative/path or sqlite:////absolute/path")
        return None if parts.hostname or "host=" in parts.query else f"no host after {scheme}://"
    if scheme in ("databricks", "databricks-uc", "uc") or uri in ("databricks", "uc"):
        return None
    return f"unknown scheme '{parts.scheme}:'"


#: params.yaml section name -> dataclass. The single source the stages and tests agree on.
SECTIONS: dict[str, type] = {
    "runtime": RuntimeConfig,
    "data": DataConfig,
    "judge": JudgeConfig,
    "vae": VAEConfig,
    "gan": GANConfig,
    "prior": PriorConfig,
    "eval": EvalConfig,
    "report": ReportConfig,
    "tracking": TrackingConfig,
}


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list or origin is list:
        return isinstance(value, list)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def validate(section: str, cls: type[T], values: Mapping[str, Any] | None) -> T:
    """Build ``cls`` from a mapping, refusing unknown keys, wrong types and out-of-range values.

    Raises:
        ConfigError: one line, e.g. ``params.yaml: vae.latnt_dim is not a known key (did you
            mean vae.latent_dim?); allowed: ...``.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"params.yaml: section '{section}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {section}.{close[0]}?)" if close else ""
            raise ConfigError(
                f"params.yaml: {section}.{key} is not a known key{hint}; "
                f"allowed keys: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        value, tp, meta = values[name], hints[name], f.metadata
        where = f"params.yaml: {section}.{name} = {value!r}"
        if not _type_ok(value, tp):
            raise ConfigError(f"{where} has the wrong type; expected {_type_name(tp)}")
        if tp is float:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} is not a finite number; give a number such as "
                                  f"{f.default!r}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{where} is not allowed; choose one of {list(meta['choices'])}")
        lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
        if lo is not None and value < lo:
            raise ConfigError(f"{where} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where} is above the maximum {hi}")
        if gt is not None and value <= gt:
            raise ConfigError(f"{where} must be greater than {gt}")
        kwargs[name] = value
    cfg = cls(**kwargs)
    _check_cross_field(section, cfg)
    return cfg


def _check_cross_field(section: str, cfg: Any) -> None:
    """Constraints that involve more than one field or a list's items."""
    if isinstance(cfg, RuntimeConfig):
        if cfg.node_rank >= cfg.nnodes:
            raise ConfigError(f"params.yaml: runtime.node_rank = {cfg.node_rank} must be below "
                              f"runtime.nnodes = {cfg.nnodes}")
        if cfg.nnodes > 1 and not cfg.rdzv_endpoint:
            raise ConfigError(f"params.yaml: runtime.nnodes = {cfg.nnodes} needs "
                              "runtime.rdzv_endpoint (host:port of node 0, the same on every node)")
    if isinstance(cfg, RuntimeConfig):
        seeds = cfg.seeds
        if (not isinstance(seeds, list) or not seeds
                or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds)
                or len(set(seeds)) != len(seeds)):
            raise ConfigError(f"params.yaml: runtime.seeds = {seeds!r} must be a non-empty list "
                              "of distinct integers >= 0, such as [0] or [0, 1, 2]")
    if isinstance(cfg, PriorConfig):
        ks = cfg.components
        if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
            raise ConfigError(f"params.yaml: prior.components = {ks!r} must be a non-empty list "
                              "of integers >= 1")
    if isinstance(cfg, GANConfig) and cfg.r1_weight > 0 and cfg.loss == "wgan_gp":
        raise ConfigError(f"params.yaml: gan.r1_weight = {cfg.r1_weight} is for the "
                          "non_saturating, minimax and hinge losses; wgan_gp has its own "
                          "penalty (gan.gp_weight): set gan.r1_weight: 0.0")
    if isinstance(cfg, TrackingConfig) and (problem := tracking_uri_problem(cfg.uri)):
        raise ConfigError(f"params.yaml: tracking.uri = {cfg.uri!r} is not a tracking URI "
                          f"({problem}); use {TRACKING_URI_FORMS}")
    if isinstance(cfg, EvalConfig):
        ks = cfg.iwae_k
        if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
            raise ConfigError(
                f"params.yaml: eval.iwae_k = {ks!r} must be a non-empty list of integers >= 1"
            )
        sigmas = cfg.parzen_sigmas
        if not sigmas or any(isinstance(s, bool) or not isinstance(s, int | float)
                             or not math.isfinite(s) or s <= 0 for s in sigmas):
            raise ConfigError(f"params.yaml: eval.parzen_sigmas = {sigmas!r} must be a "
                              "non-empty list of numbers > 0")


def check_init_from_vae(gan: GANConfig, vae_model: Mapping[str, Any]) -> None:
    """With ``gan.init_from_vae`` the generator must be shaped like the VAE decoder.

    Args:
        gan: the gan section.
        vae_model: the VAE's ``latent_dim``, ``width``, ``conditional`` and
            ``decoder_components``: the vae section's values, or a VAE checkpoint's
            ``model_config``.

    Raises:
        ConfigError: naming both sides and the ``-S`` overrides that fix it.
    """
    if not gan.init_from_vae:
        return
    if gan.g_arch != "deconv" or gan.g_extra_convs:
        raise ConfigError(f"gan.init_from_vae copies the VAE decoder's layers, but G has "
                          f"g_arch = {gan.g_arch}, g_extra_convs = {gan.g_extra_convs}; set "
                          "-S gan.g_arch=deconv -S gan.g_extra_convs=0 or "
                          "-S gan.init_from_vae=false")
    if int(vae_model.get("decoder_components", 1)) != 1:
        raise ConfigError(f"gan.init_from_vae copies the mean channels of a one-logistic VAE "
                          f"decoder, but vae.decoder_components = "
                          f"{vae_model.get('decoder_components')} (a mixture has no single mean "
                          "channel); set -S vae.decoder_components=1 or -S gan.init_from_vae=false")
    wanted = {"latent_dim": gan.latent_dim, "width": gan.width, "conditional": gan.conditional}
    have = {k: vae_model.get(k, False if k == "conditional" else None) for k in wanted}
    if have != wanted:
        fix = " ".join(f"-S gan.{k}={str(v).lower() if isinstance(v, bool) else v}"
                       for k, v in have.items() if wanted[k] != v)
        raise ConfigError(f"gan.init_from_vae needs the generator shaped like the VAE decoder: "
                          f"gan {wanted} vs vae {have}; set {fix}")


def _check_across_sections(params: Mapping[str, Any]) -> None:
    """Constraints between sections, checked by every stage (so a bad combination fails before
    any stage runs, not after the VAE is trained)."""
    check_init_from_vae(params["gan"], dataclasses.asdict(params["vae"]))
    world = params["runtime"].world_size
    for section in ("judge", "vae", "gan"):
        batch = params[section].batch_size
        if batch % world:
            raise ConfigError(f"params.yaml: {section}.batch_size = {batch} is the global batch "
                              f"and must divide by the {world} training processes (runtime."
                              "nproc_per_node x runtime.nnodes); pick a multiple of "
                              f"{world}")


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read ``params.yaml`` and refuse unknown sections. Raises :class:`ConfigError`."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found; run from the repository root (where dvc.yaml is)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}; fix the syntax") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    for section in raw:
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{path}: unknown section '{section}'{hint}; allowed: {', '.join(SECTIONS)}"
            )
    return raw


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """Read ``params.yaml`` (whole file checked) and return section ``name`` as its dataclass."""
    raw = read_params(path)
    return validate(name, SECTIONS[name], raw.get(name))


def load_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Every section, validated; sections absent from the file get their defaults."""
    raw = read_params(path)
    params = {name: validate(name, cls, raw.get(name)) for name, cls in SECTIONS.items()}
    _check_across_sections(params)
    return params


#: The sections whose ``seed`` a training seed offsets (:func:`for_seed`): what is trained once
#: per seed. The judge, the data split and the evaluation's sample draws stay the same.
SEEDED_SECTIONS = ("vae", "prior", "gan")


def for_seed(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """``params`` for training seed ``seed`` (one of ``runtime.seeds``): the ``seed`` of each of
    :data:`SEEDED_SECTIONS` plus ``seed``, so that seed 0 is the single-seed run and the seeds
    of a list give independent trainings.

    Raises:
        ConfigError: ``seed`` is not in ``runtime.seeds`` (the stage's ``--seed`` and
            params.yaml disagree).
    """
    if seed not in params["runtime"].seeds:
        raise ConfigError(f"training seed {seed} is not in params.yaml's runtime.seeds = "
                          f"{params['runtime'].seeds}; add it there (dvc.yaml's foreach stages "
                          "run one per listed seed)")
    return {**params, **{name: dataclasses.replace(params[name], seed=params[name].seed + seed)
                         for name in SEEDED_SECTIONS}}


#: Params that name a file: (section, key, what it must be, the fix).
PATH_PARAMS = (("eval", "inception_weights", "the pt_inception-2015-12-05 weights file",
                'put the weights there, or set it to "" to use the judge alone'),)


def check_paths(params: Mapping[str, Any]) -> None:
    """Every non-empty path param names a readable file. Raises :class:`ConfigError`."""
    for section, key, what, fix in PATH_PARAMS:
        value = getattr(params[section], key)
        if value and not Path(value).is_file():
            raise ConfigError(f"params.yaml: {section}.{key} = {value!r} is not a file ({what}); "
                              f"{fix}")


def check_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The whole of ``params.yaml`` as the ``validate`` stage checks it before any other stage
    runs: every section present and valid, no unknown section, path params naming files.

    Raises:
        ConfigError: one line naming the key, the value and the fix.
    """
    raw = read_params(path)
    missing = [name for name in SECTIONS if name not in raw]
    if missing:
        raise ConfigError(f"{path}: section{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(missing)} missing; every stage's section must be present "
                          "(restore it from git: git checkout -- params.yaml)")
    params = load_all(path)
    check_paths(params)
    return params


def flatten(section: str, cfg: Any) -> dict[str, Any]:
    """``{'vae.beta': 1.0, ...}``: the names used for MLflow params and in reports."""
    return {f"{section}.{k}": v for k, v in dataclasses.asdict(cfg).items()}


def flat_params(params: Mapping[str, Any], *sections: str) -> dict[str, Any]:
    """Flattened ``section.key`` params of the named sections (what MLflow records)."""
    flat: dict[str, Any] = {}
    for name in sections:
        flat.update(flatten(name, params[name]))
    return flat
