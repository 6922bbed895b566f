#!/usr/bin/env python3
"""PyTorch's CPU throughput on the tutorial's SimpleCNN, for comparison with `cargo bench --bench
step -- cpu` in the same session on the same machine (the anchor of issue 4's CPU target).

Whole training steps (forward, cross-entropy, backward, SGD lr 0.001 momentum 0.9) on a resident
synthetic batch, with torch.set_num_threads(THREADS). Prints one line per batch size: the steady
images/s of `--seconds` of steps after `--warmup` steps, and the best of `--repeats` such runs.

Usage (needs torch):  python3 scripts/pytorch_cpu_step.py [--threads 2] [--batch 64 256 1024]
                      [--seconds 3] [--repeats 3] [--warmup 5]
"""
import argparse
import time

import torch
import torch.nn as nn

from simple_cnn import SimpleCNN


def run(batch, seconds, warmup):
    torch.manual_seed(0)
    net = SimpleCNN()
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start), steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, SimpleCNN training step")
    for batch in args.batch:
        rates = [run(batch, args.seconds, args.warmup) for _ in range(args.repeats)]
        text = ", ".join(f"{r:.0f} ({n} steps)" for r, n in rates)
        print(f"pytorch cpu b{batch}: best {max(r for r, _ in rates):.0f} images/s; runs {text}")


if __name__ == "__main__":
    main()
