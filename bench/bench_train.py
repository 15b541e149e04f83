"""Training throughput of the three networks at the default params (images per second).

Budgeting aid for the default `make repro` on this machine; prints figures, asserts nothing.
Usage: python bench/bench_train.py [--steps 30] [--batch 128]
"""

from __future__ import annotations

import argparse
import time

import torch

from genduel.config import GANConfig, JudgeConfig, VAEConfig
from genduel.models.gan import Discriminator, Generator
from genduel.models.judge import Judge
from genduel.models.vae import VAE
from genduel.runtime import autocast
from genduel.train.gan import gan_train_step
from genduel.train.judge import judge_train_step
from genduel.train.vae import vae_train_step

SHAPE = (1, 28, 28)


def rate(step, steps: int, batch: int) -> float:
    for _ in range(3):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    b, cpu = args.batch, torch.device("cpu")
    x = torch.rand(b, *SHAPE) * 2 - 1
    y = torch.randint(0, 10, (b,))

    vcfg = VAEConfig()
    vae = VAE(vcfg, SHAPE)
    vopt = torch.optim.Adam(vae.parameters(), vcfg.lr)
    vae_rate = rate(lambda: vae_train_step(vae, vopt, x, vcfg, amp_ctx=autocast(cpu, False)),
                    args.steps, b)

    jcfg = JudgeConfig()
    judge = Judge(jcfg, SHAPE, 10)
    jopt = torch.optim.Adam(judge.parameters(), jcfg.lr)
    judge_rate = rate(lambda: judge_train_step(judge, jopt, x, y, amp_ctx=autocast(cpu, False)),
                      args.steps, b)

    gcfg = GANConfig()
    G, D = Generator(gcfg, SHAPE), Discriminator(gcfg, SHAPE)
    og = torch.optim.Adam(G.parameters(), gcfg.lr_g, betas=(gcfg.beta1, gcfg.beta2))
    od = torch.optim.Adam(D.parameters(), gcfg.lr_d, betas=(gcfg.beta1, gcfg.beta2))
    gen = torch.Generator().manual_seed(0)
    gan_rate = rate(lambda: gan_train_step(G, D, og, od, [x] * gcfg.d_steps, gcfg, generator=gen,
                                           amp_ctx=autocast(cpu, False)), args.steps, b)
    print(f"threads: {torch.get_num_threads()}, batch {b}, {args.steps} timed steps")
    for name, r in (("judge", judge_rate), ("vae", vae_rate), ("gan (D+G step)", gan_rate)):
        print(f"{name:<16} {r:8.0f} img/s   {55000 / r:6.1f} s per 55k-image epoch")


if __name__ == "__main__":
    main()
