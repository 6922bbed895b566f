#!/usr/bin/env python3
"""Makes the PyTorch interoperability fixture in tests/fixtures/ (checked by tests/pytorch.rs).

1. Trains the tutorial's SimpleCNN in PyTorch for 300 steps (seed 0, SGD lr 0.01 momentum 0.9,
   batch 64) and saves its state_dict with safetensors: pytorch_simple_cnn.safetensors.
2. Loads cnn_gpu_simple_cnn.safetensors, which `cnn-gpu train` wrote (see below), into the same
   PyTorch module with a strict load_state_dict.
3. For both, records in pytorch_expected.json what PyTorch computes: the number of correct test
   images and the mean loss over the 10000 MNIST test images, and the logits of a synthetic batch
   (pixel (b, h, w) = (b*784 + h*28 + w) * 37 mod 256) that needs no dataset.

Usage (needs torch, safetensors and numpy; MNIST's gzipped IDX files in the directory given):
    cargo run -- train --backend cpu --data-dir DIR --max-steps 300 --seed 7 \
        --save tests/fixtures/cnn_gpu_simple_cnn.safetensors
    python3 scripts/pytorch_fixture.py DIR
"""
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from simple_cnn import SimpleCNN

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def normalise(pixels):
    # transforms.ToTensor() then Normalize((0.5,), (0.5,))
    return (torch.from_numpy(pixels.astype(np.float32)) / 255.0 - 0.5) / 0.5


def synthetic_batch():
    b, h, w = np.meshgrid(np.arange(4), np.arange(28), np.arange(28), indexing="ij")
    pixels = ((b * 784 + h * 28 + w) * 37 % 256).astype(np.uint8)
    return normalise(pixels).reshape(4, 1, 28, 28)


def evaluate(model, images, labels):
    model.eval()
    with torch.no_grad():
        logits = model(images)
        correct = int((logits.argmax(1) == labels).sum())
        loss = float(F.cross_entropy(logits, labels))
        synthetic = model(synthetic_batch())
    return {
        "correct": correct,
        "total": len(labels),
        "accuracy_percent": 100.0 * correct / len(labels),
        "mean_loss": loss,
        "synthetic_logits": [float(v) for v in synthetic.flatten()],
    }


def main():
    data = Path(sys.argv[1])
    test_x = normalise(idx(data / "t10k-images-idx3-ubyte.gz", 16)).reshape(-1, 1, 28, 28)
    test_y = torch.from_numpy(idx(data / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    train_x = normalise(idx(data / "train-images-idx3-ubyte.gz", 16)).reshape(-1, 1, 28, 28)
    train_y = torch.from_numpy(idx(data / "train-labels-idx1-ubyte.gz", 8).astype(np.int64))

    torch.manual_seed(0)
    ours = SimpleCNN()
    opt = torch.optim.SGD(ours.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(train_y))
    for step in range(300):
        batch = order[step * 64:(step + 1) * 64]
        opt.zero_grad()
        F.cross_entropy(ours(train_x[batch]), train_y[batch]).backward()
        opt.step()
    save_file(
        {k: v.contiguous() for k, v in ours.state_dict().items()},
        FIXTURES / "pytorch_simple_cnn.safetensors",
    )

    theirs = SimpleCNN()
    theirs.load_state_dict(load_file(FIXTURES / "cnn_gpu_simple_cnn.safetensors"))  # strict

    expected = {
        "generator": f"scripts/pytorch_fixture.py with torch {torch.__version__}",
        "pytorch_simple_cnn": evaluate(ours, test_x, test_y),
        "cnn_gpu_simple_cnn": evaluate(theirs, test_x, test_y),
    }
    (FIXTURES / "pytorch_expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    for name in ("pytorch_simple_cnn", "cnn_gpu_simple_cnn"):
        e = expected[name]
        print(f"{name}: {e['accuracy_percent']:.2f}% ({e['correct']}/{e['total']}), "
              f"loss {e['mean_loss']:.4f}")


if __name__ == "__main__":
    main()
