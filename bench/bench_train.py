"""Training throughput of the three networks at the default params: img/s, GFLOP/s, % of matmul.

Budgeting aid for the default `make repro`; prints figures, asserts nothing. For each network
one training step (forward, backward, optimizer) is counted with torch's FlopCounterMode (matmul
and convolution FLOPs, forward and backward) and timed; the achieved GFLOP/s is read against an
fp32 (or, with --amp on CUDA, bf16) matmul measured in the same run, so a slow host and a slow
kernel can be told apart.

Usage: python bench/bench_train.py [--steps 30] [--batch N] [--device cpu|cuda] [--amp]
(--batch 0, the default: each network at its own params.yaml batch size)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from genduel.config import GANConfig, JudgeConfig, VAEConfig, load_all
from genduel.models.gan import Discriminator, Generator
from genduel.models.judge import Judge
from genduel.models.vae import VAE
from genduel.runtime import autocast
from genduel.train.gan import gan_train_step
from genduel.train.judge import judge_train_step
from genduel.train.vae import vae_train_step

SHAPE = (1, 28, 28)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Mean wall time of ``calls`` calls after 3 warm-up calls."""
    for _ in range(3):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / calls


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """Achieved GFLOP/s of an n x n x n matmul (2 n^3 FLOPs)."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / seconds_per_call(lambda: a @ b, 10, device) / 1e9


def step_flops(step: Callable[[], object]) -> int:
    """FLOPs (matmuls and convolutions, forward and backward) of one call of ``step``."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=0, help="0 = each network's batch_size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--defaults", action="store_true",
                        help="the dataclass defaults instead of params.yaml")
    args = parser.parse_args()
    dev = torch.device(args.device)
    ctx = lambda: autocast(dev, args.amp)  # noqa: E731
    if args.defaults:
        vcfg, jcfg, gcfg = VAEConfig(), JudgeConfig(), GANConfig()
    else:
        params = load_all()
        vcfg, jcfg, gcfg = params["vae"], params["judge"], params["gan"]
    batches = {n: args.batch or c.batch_size for n, c in (("judge", jcfg), ("vae", vcfg),
                                                          ("gan", gcfg))}
    data = {n: (torch.rand(b, *SHAPE, device=dev) * 2 - 1, torch.randint(0, 10, (b,), device=dev))
            for n, b in batches.items()}
    (xj, yj), (xv, _), (xg, _) = data["judge"], data["vae"], data["gan"]

    vae = VAE(vcfg, SHAPE).to(dev)
    vopt = torch.optim.Adam(vae.parameters(), vcfg.lr)
    judge = Judge(jcfg, SHAPE, 10).to(dev)
    jopt = torch.optim.Adam(judge.parameters(), jcfg.lr)
    G, D = Generator(gcfg, SHAPE).to(dev), Discriminator(gcfg, SHAPE).to(dev)
    og = torch.optim.Adam(G.parameters(), gcfg.lr_g, betas=(gcfg.beta1, gcfg.beta2))
    od = torch.optim.Adam(D.parameters(), gcfg.lr_d, betas=(gcfg.beta1, gcfg.beta2))
    gen = torch.Generator(dev).manual_seed(0)
    steps = {
        "judge": (lambda: judge_train_step(judge, jopt, xj, yj, amp_ctx=ctx()),
                  batches["judge"]),
        "vae": (lambda: vae_train_step(vae, vopt, xv, vcfg, amp_ctx=ctx()), batches["vae"]),
        "gan (k D + 1 G)": (lambda: gan_train_step(G, D, og, od, [xg] * gcfg.d_steps, gcfg,
                                                   generator=gen, amp_ctx=ctx()),
                            batches["gan"] * gcfg.d_steps),
    }
    dtype = torch.bfloat16 if args.amp and dev.type == "cuda" else torch.float32
    peak = matmul_gflops(dev, dtype)
    print(f"device {dev}, threads {torch.get_num_threads()}, batches {batches}, {args.steps} timed "
          f"steps; {str(dtype).removeprefix('torch.')} matmul 2048^3: {peak:.0f} GFLOP/s")
    print(f"{'network':<16} {'img/s':>8} {'s/55k':>7} {'GFLOP/step':>11} {'GFLOP/s':>8} "
          f"{'of matmul':>9}")
    for name, (step, images) in steps.items():
        flops = step_flops(step)
        sec = seconds_per_call(step, args.steps, dev)
        gflops = flops / sec / 1e9
        print(f"{name:<16} {images / sec:8.0f} {55000 / (images / sec):7.1f} "
              f"{flops / 1e9:11.3f} {gflops:8.1f} {gflops / peak:9.1%}")


if __name__ == "__main__":
    main()
