#!/usr/bin/env python3
"""Reference values for tests/optim/ and the LR-schedule tests, computed with PyTorch itself
(an independent route from the kernels under test). Run: python3 scripts/torch_optim_reference.py

Every case starts from the same small tensors and takes three steps with fixed gradients;
the printed values are quoted in the tests (float32, 9 significant digits)."""
import torch

P0 = [1.0, -2.0, 0.5, 3.0]
GRADS = [[0.5, 1.0, -1.0, 0.25], [1.0, 0.0, 2.0, -0.5], [-0.3, 0.7, 0.1, 4.0]]


def fmt(t):
    return "[" + ", ".join(f"{v:.9g}" for v in t.detach().flatten().tolist()) + "]"


def run(name, make, clip=None, grads=GRADS, p0=P0):
    # Two tensors so that clipping sees a global norm over more than one.
    p = torch.tensor(p0, dtype=torch.float32, requires_grad=True)
    opt = make([p])
    print(f"== {name}")
    for step, g in enumerate(grads, 1):
        p.grad = torch.tensor(g, dtype=torch.float32)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        st = opt.state[p]
        extra = ""
        if "momentum_buffer" in st:
            extra = f" momentum_buffer={fmt(st['momentum_buffer'])}"
        if "exp_avg" in st:
            extra = f" exp_avg={fmt(st['exp_avg'])} exp_avg_sq={fmt(st['exp_avg_sq'])}"
        print(f"step {step}: param={fmt(p)}{extra}")


run("sgd lr 0.1 momentum 0.9 weight_decay 0.01",
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, foreach=False))
run("sgd lr 0.1 momentum 0.9 nesterov weight_decay 0.01",
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                               foreach=False))
run("adam lr 0.01 betas (0.9, 0.999) eps 1e-8 weight_decay 0.01",
    lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                                foreach=False))
run("adamw lr 0.01 betas (0.8, 0.99) eps 1e-6 weight_decay 0.1",
    lambda ps: torch.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1,
                                 foreach=False))
run("sgd lr 0.1 momentum 0.9, clip_grad_norm_ 1.0",
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=False), clip=1.0)
run("adam lr 0.01 default betas, clip_grad_norm_ 0.5",
    lambda ps: torch.optim.Adam(ps, lr=0.01, foreach=False), clip=0.5)

# Global norm over two tensors: a = [3, 0], b = [0, 4, 12] -> norm 13, max_norm 6.5 -> scale ~0.5.
a = torch.zeros(2, requires_grad=True)
b = torch.zeros(3, requires_grad=True)
a.grad = torch.tensor([3.0, 0.0])
b.grad = torch.tensor([0.0, 4.0, 12.0])
norm = torch.nn.utils.clip_grad_norm_([a, b], 6.5)
print(f"== clip_grad_norm_ two tensors max_norm 6.5: total_norm={norm.item():.9g} "
      f"a.grad={fmt(a.grad)} b.grad={fmt(b.grad)}")


def schedule(name, make, steps=10):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])  # the lr this step's update uses
        opt.step()
        sched.step()
    print(f"== {name}: {fmt(torch.tensor(lrs, dtype=torch.float64))}")


LR = torch.optim.lr_scheduler
# Steps per epoch 2 in the tests: step size 2 epochs = 4 steps.
schedule("step (4 steps, gamma 0.5)", lambda o: LR.StepLR(o, step_size=4, gamma=0.5))
schedule("cosine T_max 10", lambda o: LR.CosineAnnealingLR(o, T_max=10))
schedule("warmup 3 x step (4 steps, gamma 0.5)", lambda o: LR.ChainedScheduler([
    LR.LinearLR(o, start_factor=1 / 3, end_factor=1.0, total_iters=2),
    LR.StepLR(o, step_size=4, gamma=0.5)]))
schedule("warmup 3 x cosine T_max 10", lambda o: LR.ChainedScheduler([
    LR.LinearLR(o, start_factor=1 / 3, end_factor=1.0, total_iters=2),
    LR.CosineAnnealingLR(o, T_max=10)]))
