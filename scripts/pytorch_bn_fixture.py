#!/usr/bin/env python3
"""Makes the batch-norm interchange fixture in tests/fixtures/ (checked by tests/pytorch.rs).

The model is tests/fixtures/bn_small.toml, a cnn-gpu model file, built here generically as a
PyTorch module holding an nn.Sequential in the attribute `layers` (the names cnn-gpu gives a
model file's parameters).

1. Trains it in PyTorch for 30 SGD steps (seed 0, lr 0.05, momentum 0.9, batch 32) on random
   normal images with random labels, in training mode, so the running statistics move and
   num_batches_tracked is 30; saves its state_dict with safetensors (num_batches_tracked as the
   I64 scalars PyTorch keeps): pytorch_bn_small.safetensors.
2. Loads cnn_gpu_bn_small.safetensors, written by `cnn-gpu train` (see below), into the same
   module with a strict load_state_dict.
3. For both, records in pytorch_bn_expected.json the evaluation-mode logits (running
   statistics, no dropout) of the synthetic batch of scripts/pytorch_fixture.py, and each
   batch norm's num_batches_tracked.

Usage (needs torch, safetensors and numpy; MNIST in DIR for the cnn-gpu run):
    cargo run -- train --backend cpu --data-dir DIR --model tests/fixtures/bn_small.toml \\
        --max-steps 30 --batch-size 32 --lr 0.05 --seed 7 \\
        --save tests/fixtures/cnn_gpu_bn_small.safetensors
    python3 scripts/pytorch_bn_fixture.py
"""
import json
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def build(layers):
    """An nn.Sequential from a cnn-gpu model file's [[layer]] tables."""
    out = []
    for l in layers:
        kind = l["kind"]
        if kind == "conv2d":
            out.append(nn.Conv2d(l["in_channels"], l["out_channels"], l["kernel"],
                                 stride=l.get("stride", 1), padding=l.get("padding", 0)))
        elif kind == "relu":
            out.append(nn.ReLU())
        elif kind == "maxpool2d":
            out.append(nn.MaxPool2d(l["kernel"], l.get("stride", l["kernel"])))
        elif kind == "avgpool2d":
            out.append(nn.AvgPool2d(l["kernel"], l.get("stride", l["kernel"])))
        elif kind == "flatten":
            out.append(nn.Flatten())
        elif kind == "linear":
            out.append(nn.Linear(l["in_features"], l["out_features"]))
        elif kind == "dropout":
            out.append(nn.Dropout(l.get("p", 0.5)))
        elif kind == "batchnorm2d":
            out.append(nn.BatchNorm2d(l["num_features"]))
        elif kind == "batchnorm1d":
            out.append(nn.BatchNorm1d(l["num_features"]))
        else:
            raise ValueError(kind)
    return nn.Sequential(*out)


class Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.layers = build(spec["layer"])

    def forward(self, x):
        return self.layers(x)


def synthetic_batch():
    # As scripts/pytorch_fixture.py: pixel (b, h, w) = (b*784 + h*28 + w) * 37 mod 256,
    # then ToTensor and Normalize((0.5,), (0.5,)).
    b, h, w = np.meshgrid(np.arange(4), np.arange(28), np.arange(28), indexing="ij")
    pixels = ((b * 784 + h * 28 + w) * 37 % 256).astype(np.float32)
    return ((torch.from_numpy(pixels) / 255.0 - 0.5) / 0.5).reshape(4, 1, 28, 28)


def record(model):
    model.eval()
    with torch.no_grad():
        logits = model(synthetic_batch())
    tracked = {k: int(v) for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    return {"synthetic_logits": [float(v) for v in logits.flatten()], "num_batches_tracked": tracked}


def main():
    spec = tomllib.loads((FIXTURES / "bn_small.toml").read_text())
    torch.manual_seed(0)
    model = Net(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(30):
        x = torch.randn(32, 1, 28, 28)
        y = torch.randint(0, 10, (32,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    save_file(model.state_dict(), FIXTURES / "pytorch_bn_small.safetensors")
    expected = {"pytorch_bn_small": record(model)}

    ours = Net(spec)
    ours.load_state_dict(load_file(FIXTURES / "cnn_gpu_bn_small.safetensors"), strict=True)
    expected["cnn_gpu_bn_small"] = record(ours)
    (FIXTURES / "pytorch_bn_expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"torch {torch.__version__}:", json.dumps({k: v["num_batches_tracked"] for k, v in expected.items()}))


main()
