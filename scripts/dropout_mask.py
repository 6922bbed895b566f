"""Reference dropout masks for tests/dropout.rs, from an independent Python implementation of
the hash in shaders/dropout.wgsl (PCG's output permutation, Jarzynski and Olano 2020):
element i is kept at a step when pcg(pcg(pcg(seed) ^ step) ^ i) >= round(p * 2^32).

    python3 scripts/dropout_mask.py
"""

M = 0xFFFFFFFF


def pcg(v):
    s = (v * 747796405 + 2891336453) & M
    w = (((s >> ((s >> 28) + 4)) ^ s) * 277803737) & M
    return (w >> 22) ^ w


def kept(seed, step, p, n):
    threshold = min(round(p * 2**32), M)
    return "".join("1" if pcg(pcg(pcg(seed) ^ step) ^ i) >= threshold else "0" for i in range(n))


print("pcg(0) =", pcg(0), " pcg(1) =", pcg(1), " pcg(0xdeadbeef) =", pcg(0xDEADBEEF))
for seed, step, p in [(1, 0, 0.5), (1, 1, 0.5), (12345, 7, 0.25)]:
    print(f"seed {seed} step {step} p {p}: {kept(seed, step, p, 32)}")
