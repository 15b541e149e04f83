"""The lecture variants as parameters: WGAN-GP, SGD with momentum, conditional nets, the CVAE and
the generator initialised from the VAE decoder, each against a case with a known answer."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from genduel.checkpoint import load_checkpoint, save_checkpoint
from genduel.config import GANConfig, VAEConfig
from genduel.data.pixels import to_model_range
from genduel.data.splits import Split
from genduel.errors import ConfigError, DataError
from genduel.models.gan import (
    Discriminator,
    Generator,
    build_discriminator,
    critic_loss,
    d_loss,
    g_loss,
    gradient_penalty,
    r1_penalty,
)
from genduel.models.vae import (
    VAE,
    build_vae,
    cvae_elbo,
    elbo_terms,
    iwae_bound,
    marginal_bound,
)
from genduel.runtime import eval_mode, make_generator
from genduel.tracking.base import RecordingTracker
from genduel.train.gan import gan_train_step, train_gan
from genduel.train.gan_init import generator_state_from_vae, load_init, write_init
from genduel.train.vae import vae_train_step

SHAPE = (1, 8, 8)
NULL = contextlib.nullcontext


# ----------------------------------------------------------------------------- WGAN-GP
def test_gradient_penalty_is_zero_for_a_unit_gradient_linear_critic():
    """f(x) = <w, x> has grad f = w everywhere: penalty (||w|| - 1)^2, 0 for ||w|| = 1."""
    gen = make_generator(0)
    real, fake = torch.randn(16, *SHAPE, generator=gen), torch.randn(16, *SHAPE, generator=gen)
    w = torch.randn(*SHAPE, generator=gen)
    for norm, want in ((1.0, 0.0), (2.0, 1.0), (0.5, 0.25)):
        w_n = w / w.norm() * norm

        def critic(x, w_n=w_n):
            return (x * w_n).flatten(1).sum(1)

        got = gradient_penalty(critic, real, fake, generator=make_generator(1))
        assert got.item() == pytest.approx(want, abs=1e-6)


def test_gradient_penalty_trains_the_critic_through_its_graph():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    penalty = gradient_penalty(lambda x: critic(x).squeeze(1), torch.randn(4, *SHAPE),
                               torch.randn(4, *SHAPE))
    penalty.backward()
    assert critic[1].weight.grad is not None and critic[1].weight.grad.abs().sum() > 0


def test_wgan_gp_linear_critic_converges_to_its_closed_form_on_1d_gaussians():
    """Critic f(x) = a x + b between N(2, 1) (real) and N(0, 1) (fake), penalty weight lambda.

    min_a  a (mu_f - mu_r) + lambda (|a| - 1)^2  gives  a* = 1 + (mu_r - mu_f) / (2 lambda),
    so the critic's Wasserstein estimate -critic_loss tends to a* (mu_r - mu_f) = 2.2 for
    lambda = 10, close to the true W1 = 2.
    """
    gen, lam = make_generator(0), 10.0
    critic = nn.Linear(1, 1)
    with torch.no_grad():  # the penalty has wells at a = +-1; start in the basin of the optimum
        critic.weight.fill_(0.1)
    opt = torch.optim.Adam(critic.parameters(), lr=0.02)
    for _ in range(600):
        real, fake = 2 + torch.randn(512, 1, generator=gen), torch.randn(512, 1, generator=gen)
        f = lambda x: critic(x).squeeze(1)  # noqa: E731
        loss = critic_loss(f(real), f(fake)) + lam * gradient_penalty(f, real, fake,
                                                                      generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert critic.weight.item() == pytest.approx(1 + 2 / (2 * lam), abs=0.02)
    with torch.no_grad():
        real, fake = 2 + torch.randn(20000, 1, generator=gen), torch.randn(20000, 1,
                                                                           generator=gen)
        w1 = -critic_loss(critic(real).squeeze(1), critic(fake).squeeze(1)).item()
    assert w1 == pytest.approx(2.2, abs=0.05)


def test_wgan_generator_loss_is_minus_the_mean_score_and_never_saturates():
    scores = torch.tensor([-50.0, 0.0, 50.0], requires_grad=True)
    loss = g_loss(scores, "wgan_gp")
    loss.backward()
    assert loss.item() == pytest.approx(0.0)
    torch.testing.assert_close(scores.grad, torch.full((3,), -1 / 3))


def test_wgan_critic_has_no_batchnorm_and_bce_discriminator_has():
    def has_bn(net):
        return any(isinstance(m, nn.BatchNorm2d) for m in net.modules())

    assert not has_bn(Discriminator(GANConfig(loss="wgan_gp", width=4), SHAPE))
    assert has_bn(Discriminator(GANConfig(loss="minimax", width=4), SHAPE))
    rebuilt = build_discriminator(Discriminator(GANConfig(loss="wgan_gp", width=4),
                                                SHAPE).model_config())
    assert not has_bn(rebuilt)


# ----------------------------------------------------------------------------- R1
def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
    """l(x) = <w, x> + b has grad_x l = w for every image: mean ||w||^2 = ||w||^2."""
    gen = make_generator(0)
    w = torch.randn(*SHAPE, generator=gen)
    real = torch.randn(16, *SHAPE, generator=gen).requires_grad_(True)
    scores = (real * w).flatten(1).sum(1) + 3.0  # (16,)
    got = r1_penalty(scores, real)
    assert got.item() == pytest.approx(w.pow(2).sum().item(), rel=1e-6)


def test_r1_penalty_of_a_quadratic_discriminator_averages_the_per_image_norms():
    """l(x) = ||x||^2 / 2 has grad_x l = x: the penalty is mean_i ||x_i||^2."""
    real = torch.randn(8, *SHAPE, generator=make_generator(1)).requires_grad_(True)
    got = r1_penalty(real.pow(2).flatten(1).sum(1) / 2, real)
    assert got.item() == pytest.approx(real.detach().pow(2).flatten(1).sum(1).mean().item(),
                                       rel=1e-6)


@pytest.mark.parametrize(("every", "step", "factor"), [(1, 0, 1), (4, 1, 0), (4, 8, 4)])
def test_r1_enters_the_discriminator_update_as_gamma_over_two_times_the_penalty(every, step,
                                                                                factor):
    """One SGD step of D with r1_weight = gamma moves D's weights by -lr * gamma / 2 * grad R1
    more than the step without it (same weights, batch and noise); lazily (r1_every = 4) that is
    4 times as much at a step divisible by 4 and nothing at the others."""
    gamma, lr = 4.0, 0.1
    split = _easy_split()
    x = to_model_range(split.images[:16])
    moved = {}
    for weight in (0.0, gamma):
        cfg = GANConfig(latent_dim=4, width=4, r1_weight=weight, r1_every=every)
        torch.manual_seed(0)
        G, D = Generator(cfg, SHAPE), Discriminator(cfg, SHAPE)
        start = [p.detach().clone() for p in D.parameters()]
        if weight:  # grad of R1 at the starting weights, on a copy in the same (train) mode
            probe = Discriminator(cfg, SHAPE)
            probe.load_state_dict(D.state_dict())
            xr = x.clone().requires_grad_(True)
            r1_grads = torch.autograd.grad(r1_penalty(probe(xr), xr), list(probe.parameters()),
                                           allow_unused=True)
        gan_train_step(G, D, torch.optim.SGD(G.parameters(), lr=0.0),
                       torch.optim.SGD(D.parameters(), lr=lr), [x], cfg,
                       generator=make_generator(3), amp_ctx=NULL(), step=step)
        moved[weight] = [p.detach() - s for p, s in zip(D.parameters(), start)]
    for plain, with_r1, g in zip(moved[0.0], moved[gamma], r1_grads):
        want = torch.zeros_like(plain) if g is None else -lr * gamma * factor / 2 * g
        torch.testing.assert_close(with_r1 - plain, want, atol=1e-6, rtol=1e-4)


def test_r1_is_refused_with_wgan_gp():
    from genduel.config import validate

    with pytest.raises(ConfigError, match=r"gan.r1_weight = 1.0 .* set gan.r1_weight: 0.0"):
        validate("gan", GANConfig, {"loss": "wgan_gp", "r1_weight": 1.0})
    with pytest.raises(ConfigError, match="gan.r1_weight = -1.0 is below the minimum"):
        validate("gan", GANConfig, {"r1_weight": -1.0})


# ----------------------------------------------------------------------------- every variant
def _easy_split(n: int = 96, seed: int = 0) -> Split:
    """Three classes of 8x8 images: a bright horizontal band in the top, middle or bottom."""
    gen = make_generator(seed)
    labels = torch.arange(n) % 3
    images = torch.full((n, *SHAPE), 20.0)
    for c in range(3):
        images[labels == c, 0, 1 + 2 * c:3 + 2 * c, :] = 230.0
    images += 10 * torch.randn(images.shape, generator=gen)
    return Split(images.clamp(0, 255).round().to(torch.uint8), labels, ["top", "mid", "bottom"])


VARIANTS = [
    {"loss": "minimax"}, {"loss": "non_saturating"}, {"loss": "wgan_gp", "d_steps": 2},
    {"optimizer": "sgd_momentum", "lr_g": 0.01, "lr_d": 0.01},
    {"conditional": True}, {"conditional": True, "loss": "wgan_gp"},
    {"r1_weight": 1.0}, {"loss": "hinge", "r1_weight": 1.0},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_discriminator_loss_falls_for_a_fixed_generator(variant):
    """With G frozen, D's own objective must go down under its updates (k steps at a time)."""
    cfg = GANConfig(latent_dim=4, width=4, batch_size=32, **variant)
    split = _easy_split()
    torch.manual_seed(0)
    G, D = Generator(cfg, SHAPE, 3), Discriminator(cfg, SHAPE, 3)
    opt_d = (torch.optim.SGD(D.parameters(), lr=0.05, momentum=cfg.momentum)
             if cfg.optimizer == "sgd_momentum" else torch.optim.Adam(D.parameters(), lr=5e-3))
    opt_g = torch.optim.SGD(G.parameters(), lr=0.0)  # G frozen: lr 0
    x, y = to_model_range(split.images[:32]), split.labels[:32]
    losses = [gan_train_step(G, D, opt_g, opt_d, [x] * cfg.d_steps, cfg,
                             generator=make_generator(i % 2), amp_ctx=NULL(),
                             real_labels=[y] * cfg.d_steps)["d_loss"] for i in range(30)]
    assert sum(losses[-5:]) < sum(losses[:5]) - 0.1 * abs(sum(losses[:5]))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_every_variant_trains_and_its_checkpoint_rebuilds_it(tmp_path, variant):
    cfg = GANConfig(latent_dim=4, width=4, batch_size=16, epochs=2, log_every=2, grid_images=6,
                    diag_samples=9, **variant)
    split = _easy_split()
    summary = train_gan(cfg, split, device=torch.device("cpu"), amp=False,
                        tracker=RecordingTracker(), checkpoint_path=tmp_path / "gan.pt",
                        artifacts_dir=tmp_path / "art")
    assert all(math.isfinite(summary[k]) for k in ("d_loss", "g_loss", "d_acc"))
    assert (summary["gp"] > 0) == (cfg.loss == "wgan_gp" or cfg.r1_weight > 0)
    ckpt = load_checkpoint(tmp_path / "gan.pt", "gan")
    assert ckpt["extra"]["config"] == dataclasses.asdict(cfg)
    opt_state = ckpt["optimizers"]["generator"]["param_groups"][0]
    assert ("momentum" in opt_state and "betas" not in opt_state) == (
        cfg.optimizer == "sgd_momentum")
    saved = torch.load(tmp_path / "art" / "epoch_samples.pt", weights_only=True)
    assert saved["epochs"] == [1, 2] and saved["images"].shape == (2, 9, *SHAPE)
    assert saved["images"].dtype == torch.uint8
    assert (saved["labels"] is not None) == cfg.conditional


def test_sgd_momentum_is_the_optimizer_the_paper_used(tmp_path):
    cfg = GANConfig(latent_dim=4, width=4, batch_size=16, epochs=1, optimizer="sgd_momentum",
                    momentum=0.7, lr_g=0.01, lr_d=0.02, diag_samples=0)
    train_gan(cfg, _easy_split(), device=torch.device("cpu"), amp=False,
              tracker=RecordingTracker(), checkpoint_path=tmp_path / "gan.pt",
              artifacts_dir=tmp_path / "art")
    groups = {k: v["param_groups"][0]
              for k, v in load_checkpoint(tmp_path / "gan.pt")["optimizers"].items()}
    assert groups["generator"]["momentum"] == groups["discriminator"]["momentum"] == 0.7
    assert (groups["generator"]["lr"], groups["discriminator"]["lr"]) == (0.01, 0.02)
    assert not (tmp_path / "art" / "epoch_samples.pt").exists()


# ----------------------------------------------------------------------------- conditional nets
def test_conditional_generator_output_depends_on_the_label_and_needs_it():
    torch.manual_seed(0)
    G = Generator(GANConfig(latent_dim=4, width=4, conditional=True), SHAPE, 3).eval()
    z = torch.randn(3, 4)
    with torch.no_grad():
        a, b = G(z, torch.tensor([0, 0, 0])), G(z, torch.tensor([1, 1, 1]))
        assert not torch.allclose(a, b)
        # a one-hot float code is the same input as the integer label
        torch.testing.assert_close(G(z, torch.eye(3)[[0, 0, 0]]), a)
        with pytest.raises(ValueError, match="class-conditional"):
            G(z)
        assert G.sample(5, make_generator(0)).shape == (5, *SHAPE)
    with pytest.raises(ConfigError, match="gan.conditional"):
        Generator(GANConfig(conditional=True, width=4), SHAPE, 0)


def _train_cvae(steps: int = 300) -> tuple[VAE, Split]:
    split = _easy_split(192)
    cfg = VAEConfig(latent_dim=2, width=8, conditional=True, lr=3e-3)
    torch.manual_seed(0)
    model = VAE(cfg, SHAPE, 3)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = make_generator(0)
    for step in range(steps):
        idx = torch.randint(len(split), (64,), generator=gen)
        vae_train_step(model, opt, to_model_range(split.images[idx]), cfg, amp_ctx=NULL(),
                       step=step, generator=gen, y=split.labels[idx])
    return model, split


def test_cvae_decodes_the_requested_class():
    """After short training on three easy classes, a judge (nearest class mean of the real
    images) assigns almost every sample decoded with label c to class c."""
    model, split = _train_cvae()
    x = to_model_range(split.images).flatten(1)
    means = torch.stack([x[split.labels == c].mean(0) for c in range(3)])  # (3, 64)
    labels = torch.arange(300) % 3
    with eval_mode(model):
        samples = model.sample(300, make_generator(5), labels=labels).flatten(1)
    judged = torch.cdist(samples, means).argmin(1)
    assert (judged == labels).float().mean() > 0.9


def test_cvae_marginal_bounds_order_and_enumerate_the_labels():
    """On log p(x): IWAE over the labels (K * k samples) >= the true-label ELBO - log K, and the
    enumeration really calls the per-label bound once per label."""
    model, split = _train_cvae(100)
    x, y = to_model_range(split.images[:12]), split.labels[:12]
    with eval_mode(model):
        calls = []

        def per_label(c):
            calls.append(c)
            return iwae_bound(model, x, 200, make_generator(2), y=c)

        iwae = marginal_bound(model, x, per_label)
        assert len(calls) == 3 and all(torch.equal(c, c[:1].expand(12)) for c in calls)
        terms = elbo_terms(model, x, 64, make_generator(3), y)
        elbo = cvae_elbo(terms, 3)
        torch.testing.assert_close(elbo, terms.elbo_nats - math.log(3))
        assert iwae.mean() > elbo.mean()
        # logsumexp over labels is at least the true label's term minus log K
        true_iwae = iwae_bound(model, x, 200, make_generator(2), y=y)
        assert (iwae >= true_iwae - math.log(3) - 1.0).all()  # MC noise of separate draws


def test_cvae_checkpoint_config_rebuilds_a_conditional_model():
    model = VAE(VAEConfig(latent_dim=2, width=4, conditional=True), SHAPE, 3)
    rebuilt = build_vae(model.model_config())
    assert rebuilt.conditional and rebuilt.num_classes == 3
    rebuilt.load_state_dict(model.state_dict())
    with pytest.raises(ConfigError, match="vae.conditional"):
        VAE(VAEConfig(conditional=True, width=4), SHAPE, 1)


# ----------------------------------------------------------------------------- gan_init
def _vae_checkpoint(path: Path, cfg: VAEConfig, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    model = VAE(cfg, SHAPE, 3)
    for m in model.modules():  # non-trivial BatchNorm statistics, which must carry over
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, {"kind": "vae", "model_config": model.model_config(),
                           "state_dicts": {"vae": model.state_dict()}, "epoch": 3})
    return model


@pytest.mark.parametrize("conditional", [False, True])
def test_generator_started_from_the_vae_is_the_decoder_mean(tmp_path, conditional):
    vae = _vae_checkpoint(tmp_path / "vae.pt", VAEConfig(latent_dim=3, width=4,
                                                         conditional=conditional))
    cfg = GANConfig(latent_dim=3, width=4, conditional=conditional, init_from_vae=True)
    write_init(cfg, tmp_path / "vae.pt", tmp_path / "init.pt")
    G = Generator(cfg, SHAPE, 3)
    G.load_state_dict(load_init(tmp_path / "init.pt", cfg))
    z, y = torch.randn(6, 3), torch.arange(6) % 3
    with eval_mode(G, vae):
        torch.testing.assert_close(G(z, y), vae.decode(z, y)[0])


def test_init_from_vae_refuses_an_incompatible_generator_with_the_fix(tmp_path):
    _vae_checkpoint(tmp_path / "vae.pt", VAEConfig(latent_dim=3, width=4))
    cfg = GANConfig(latent_dim=64, width=4, init_from_vae=True)
    with pytest.raises(ConfigError, match=r"set -S gan.latent_dim=3"):
        generator_state_from_vae(load_checkpoint(tmp_path / "vae.pt"), cfg)


def test_gan_init_file_ignores_the_vae_when_off_and_follows_it_when_on(tmp_path):
    """What makes the DVC firewall work: off, the bytes do not depend on the VAE at all."""
    vae_cfg = VAEConfig(latent_dim=3, width=4)
    outs = {}
    for flag in (False, True):
        cfg = GANConfig(latent_dim=3, width=4, init_from_vae=flag)
        for seed in (0, 1):
            _vae_checkpoint(tmp_path / "vae.pt", vae_cfg, seed)
            write_init(cfg, tmp_path / "vae.pt", tmp_path / f"init_{flag}_{seed}.pt")
            outs[flag, seed] = (tmp_path / f"init_{flag}_{seed}.pt").read_bytes()
    assert outs[False, 0] == outs[False, 1]
    assert outs[True, 0] != outs[True, 1]
    write_init(GANConfig(init_from_vae=False), tmp_path / "missing.pt", tmp_path / "x.pt")
    with pytest.raises(DataError, match="dvc repro gan_init"):
        load_init(tmp_path / "x.pt", GANConfig(init_from_vae=True))


def test_d_loss_and_critic_loss_agree_on_who_is_winning():
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0])
    assert d_loss(real, fake) < d_loss(fake, real)
    assert critic_loss(real, fake) < critic_loss(fake, real)


def test_conditional_discriminator_learns_whether_image_and_label_match():
    """Real = (x, its label), fake = (the same x, a wrong label): only a D in which the label
    interacts with the image features can separate them (a per-class logit offset cannot:
    every image and every label appear on both sides)."""
    split = _easy_split(96)
    cfg = GANConfig(width=8, conditional=True)
    torch.manual_seed(0)
    D = Discriminator(cfg, SHAPE, 3)
    opt = torch.optim.Adam(D.parameters(), lr=3e-3)
    x, y = to_model_range(split.images), split.labels
    wrong = (y + 1 + torch.randint(2, y.shape, generator=make_generator(0))) % 3
    for _ in range(60):
        loss = d_loss(D(x, y), D(x, wrong))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with eval_mode(D):
        acc = ((D(x, y) > 0).float().mean() + (D(x, wrong) < 0).float().mean()) / 2
    assert acc > 0.9
