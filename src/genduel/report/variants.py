"""Each model variant's settings as report text: the rows of the "Models compared" table.

The settings come from the ``model_params`` each eval JSON carries (the model's config, as saved
in its checkpoint); a setting that does not apply to a model is shown as :data:`DASH`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genduel import config

DASH = "—"  # a setting that does not apply to that model

#: ``gan.loss`` -> the objective it trains, one entry per loss of :data:`genduel.config.GAN_LOSSES`.
GAN_OBJECTIVES = {
    "minimax": "minimax: D maximizes log D(x) + log(1 − D(G(z))), G minimizes the same",
    "non_saturating": "non-saturating: G maximizes log D(G(z)) (Goodfellow et al. 2014, sec. 3)",
    "wgan_gp": "WGAN-GP: critic f, Wasserstein loss with gradient penalty (Gulrajani et al. 2017)",
    "hinge": "hinge: D minimizes relu(1 − l(x)) + relu(1 + l(G(z))), G maximizes l(G(z))",
}
if set(GAN_OBJECTIVES) != set(config.GAN_LOSSES):
    raise ImportError(f"GAN_OBJECTIVES describes the losses {sorted(GAN_OBJECTIVES)} but "
                      f"genduel.config.GAN_LOSSES is {config.GAN_LOSSES}: describe each one")
#: train_vae builds Adam with a cosine learning-rate decay; there is no parameter to report.
VAE_OPTIMIZER = "Adam, cosine learning-rate decay"


def _setting(params: dict[str, Any] | None, key: str) -> str:
    """A setting as text: yes/no for flags, 4 significant digits for numbers, DASH if absent."""
    if params is None or params.get(key) is None:
        return DASH
    value = params[key]
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _gan_optimizer(gan: dict[str, Any]) -> str:
    if gan.get("optimizer") == "sgd_momentum":
        return f"SGD, momentum {_setting(gan, 'momentum')}"
    if gan.get("optimizer") == "adam":
        return f"Adam, β1 {_setting(gan, 'beta1')}, β2 {_setting(gan, 'beta2')}"
    return _setting(gan, "optimizer")


def _vae_objective(vae: dict[str, Any]) -> str:
    beta = vae.get("beta")
    if beta is None:
        return DASH
    if beta == 1:
        return "ELBO (β = 1)"
    return f"β-VAE: reconstruction − {beta:.4g} · KL (not the ELBO)"


Cell = Callable[[dict[str, Any]], str]


def _key(key: str) -> Cell:
    return lambda p: _setting(p, key)


def _none(_: dict[str, Any]) -> str:
    return DASH


#: ``gan.g_arch`` in words.
G_UPSAMPLING = {"deconv": "4×4 stride-2 transposed conv",
                "resize": "nearest-neighbour resize + 3×3 conv"}


def _g_upsampling(g: dict[str, Any]) -> str:
    if "g_arch" not in g:
        return DASH
    extra = int(g.get("g_extra_convs", 0))
    return (G_UPSAMPLING.get(g["g_arch"], _setting(g, "g_arch"))
            + (f", {extra} more 3×3 conv{'s' if extra > 1 else ''} between" if extra else ""))


#: (setting, VAE cell, GAN cell): the settings that define each variant.
SETTINGS: list[tuple[str, Cell, Cell]] = [
    ("Class-conditional", _key("conditional"), _key("conditional")),
    ("Objective", _vae_objective, lambda g: GAN_OBJECTIVES.get(g.get("loss"), _setting(g, "loss"))),
    ("Gradient penalty weight λ", _none,
     lambda g: _setting(g, "gp_weight") if g.get("loss") == "wgan_gp" else DASH),
    ("R1 penalty weight γ (real images)", _none,
     lambda g: (_setting(g, "r1_weight") + (f", every {g['r1_every']} G steps"
                                             if g.get("r1_every", 1) > 1 else ""))
     if g.get("r1_weight") else DASH),
    ("Monte Carlo samples of z per image", _key("mc_samples"), _none),
    ("Decoder p(x ∣ z) per pixel", lambda v: DASH if "decoder_components" not in v else
     ("discretized logistic" if v["decoder_components"] == 1 else
      f"mixture of {v['decoder_components']} discretized logistics"), _none),
    ("KL warm-up (epochs)", _key("kl_warmup_epochs"), _none),
    ("D (critic) steps per G step", _none, _key("d_steps")),
    ("Latent dimension", _key("latent_dim"), _key("latent_dim")),
    ("Width (channels of the first conv block)", _key("width"), _key("width")),
    ("Discriminator width", _none, lambda g: _setting(g, "d_width") if g.get("d_width")
     else _setting(g, "width")),
    ("Spectral normalization in D", _none, _key("spectral_norm")),
    ("Generator upsampling (x2, twice)", _none, _g_upsampling),
    ("EMA of G's weights (decay; sampled when on)", _none,
     lambda g: _setting(g, "ema_decay") if g.get("ema_decay") else
     ("off" if "ema_decay" in g else DASH)),
    ("Generator initialized from the VAE decoder", _none, _key("init_from_vae")),
    ("Optimizer", lambda v: VAE_OPTIMIZER, _gan_optimizer),
    ("Learning rate", _key("lr"),
     lambda g: f"G {_setting(g, 'lr_g')}, D {_setting(g, 'lr_d')}"),
    ("Epochs × batch size", lambda p: f"{_setting(p, 'epochs')} × {_setting(p, 'batch_size')}",
     lambda p: f"{_setting(p, 'epochs')} × {_setting(p, 'batch_size')}"),
]


def settings_rows(vae: dict[str, Any] | None, gan: dict[str, Any] | None) -> list[list[str]]:
    """Setting, VAE, GAN for each of :data:`SETTINGS`; a model without params gets DASH
    throughout, and a setting that applies to neither model is left out."""
    rows = [[label, vae_cell(vae) if vae is not None else DASH,
             gan_cell(gan) if gan is not None else DASH] for label, vae_cell, gan_cell in SETTINGS]
    return [r for r in rows if r[1:] != [DASH, DASH]]  # e.g. λ of a GAN without WGAN-GP
