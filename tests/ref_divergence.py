"""Independent reference for rl/divergence.c: writes tests/fixtures/divergence/ for tests/test_divergence.c.

Every number is computed from the textbook formulas at 40 significant digits (mpmath), so no care
for cancellation is needed here: the C code's job is to reach the same numbers in double with
log1p/expm1 and non-negative sums; this script shares nothing with it. Gradients are central finite
differences of the same formulas (step 1e-15 at 40 digits: both truncation and rounding error are far
below double precision).

Usage (from the repository root): python3 tests/ref_divergence.py      (a few minutes)

Output, all little-endian:
  logits.bin    float32; per case, the teacher rows (N,V) then the student rows (N,V)
  grads.bin     float64; reference gradients w.r.t. the student logits, V values each
  expected.txt  one record per line:
    case <name> <N> <V> <teacher_temperature> <float offset of the case in logits.bin>
    value <row> <divergence name> <beta> <skew> <top_k> <D>
    ddir  <row> <divergence name> <beta> <skew> <top_k> <sum_v dD/ds_v * delta_v>
    grad  <row> <divergence name> <beta> <skew> <top_k> <double offset in grads.bin>
    metrics <row> <forward KL> <reverse KL> <JSD(0.5)> <teacher entropy> <student entropy>
  delta_v = ((v * 7919) mod 1000) / 1000 - 0.5 is the direction of the directional derivatives.
Conventions (docs/divergences.md): P = softmax(teacher / temperature), Q = softmax(student); a -inf
logit masks its entry; the gradient at a masked student entry is 0; top-k keeps the teacher's top k
(forward and skew KL), the student's (reverse and skew reverse KL) or the union (JSD, TV), ties to the
lower index, plus one tail bucket with each side's remaining mass."""
import os
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40
INF = mp.inf
STEP = mp.mpf(10) ** -15

# (divergence name, beta, skew, top_k); beta and skew are what the C side parses, as doubles.
CONFIGS = (
    [("forward_kl", 0.5, 0.1, 0), ("reverse_kl", 0.5, 0.1, 0), ("tv", 0.5, 0.1, 0)]
    + [("jsd", b, 0.1, 0) for b in (0.0, 1e-6, 1e-4, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-4, 1 - 1e-6, 1.0)]
    + [("jsd_trl", b, 0.1, 0) for b in (0.0, 0.5, 1.0)]
    + [("jsd_scaled", b, 0.1, 0) for b in (0.0, 1e-6, 1e-2, 0.5, 1 - 1e-6, 1.0)]
    + [("skew_kl", 0.5, a, 0) for a in (0.1, 0.5)]
    + [("skew_reverse_kl", 0.5, a, 0) for a in (0.1, 0.5)]
    + [
        ("forward_kl", 0.5, 0.1, 10),
        ("reverse_kl", 0.5, 0.1, 10),
        ("jsd", 0.5, 0.1, 10),
        ("jsd", 1e-4, 0.1, 5),
        ("jsd_scaled", 0.9, 0.1, 10),
        ("tv", 0.5, 0.1, 10),
        ("skew_kl", 0.5, 0.1, 10),
        ("skew_reverse_kl", 0.5, 0.1, 10),
    ]
)


def probabilities(logits, temperature):
    """softmax(logits / temperature) as mp numbers; logits are exact (floats or mpf), -inf allowed."""
    scaled = [mp.mpf(x) / temperature for x in logits]
    top = max(scaled)
    total = mp.fsum(mp.exp(x - top) for x in scaled)
    return [mp.exp(x - top) / total for x in scaled]


def kl(p, q):
    total = mp.mpf(0)
    for pv, qv in zip(p, q):
        if pv == 0:
            continue
        if qv == 0:
            return INF
        total += pv * mp.log(pv / qv)
    return total


def mixture(p, q, wp):
    wp = mp.mpf(wp)
    return [wp * pv + (1 - wp) * qv for pv, qv in zip(p, q)]


def jsd(p, q, beta):
    beta = mp.mpf(beta)
    m = mixture(p, q, beta)
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


def divergence(name, beta, skew, p, q):
    if name == "forward_kl":
        return kl(p, q)
    if name == "reverse_kl":
        return kl(q, p)
    if name == "tv":
        return mp.fsum(abs(pv - qv) for pv, qv in zip(p, q)) / 2
    if name == "skew_kl":
        return kl(p, mixture(p, q, skew))
    if name == "skew_reverse_kl":
        return kl(q, mixture(q, p, skew))
    if name == "jsd":
        return mp.mpf(0) if beta in (0.0, 1.0) else jsd(p, q, beta)
    if beta == 0.0:
        return kl(p, q)
    if beta == 1.0:
        return kl(q, p)
    if name == "jsd_trl":
        return jsd(p, q, beta)
    if name == "jsd_scaled":
        return jsd(p, q, beta) / (mp.mpf(beta) * (1 - mp.mpf(beta)))
    raise ValueError(name)


def kept_entries(name, top_k, teacher, student):
    """Indices kept by the top-k approximation, or None for exact. Ties go to the lower index."""
    if top_k == 0 or top_k >= len(teacher):
        return None
    top = lambda x: set(np.argsort(-np.asarray(x, dtype=np.float64), kind="stable")[:top_k].tolist())
    if name in ("forward_kl", "skew_kl"):
        return sorted(top(teacher))
    if name in ("reverse_kl", "skew_reverse_kl"):
        return sorted(top(student))
    return sorted(top(teacher) | top(student))


def coarsen(dist, kept):
    if kept is None:
        return dist
    inside = set(kept)
    return [dist[i] for i in kept] + [mp.fsum(dist[i] for i in range(len(dist)) if i not in inside)]


def evaluate(config, kept, p, q):
    name, beta, skew, _ = config
    return divergence(name, beta, skew, coarsen(p, kept), coarsen(q, kept))


def entropy(p):
    return -mp.fsum(pv * mp.log(pv) for pv in p if pv > 0)


def direction(V):
    return [mp.mpf((v * 7919) % 1000) / 1000 - mp.mpf(0.5) for v in range(V)]


def make_cases():
    rng = np.random.default_rng(20240511)
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    cases = []

    def add(name, teacher, student, temperature=1.0, gradients=False):
        cases.append((name, f32(teacher), f32(student), temperature, gradients))

    V = 1000
    add("random", rng.normal(0, 2, (3, V)), rng.normal(0, 2, (3, V)))
    t = rng.normal(0, 2, (2, V))
    add("close", t, t + rng.normal(0, 0.01, (2, V)))  # divergences ~1e-5: cancellation territory
    z = rng.normal(0, 1, (2, V))
    add("peaked", 50 * z, 50 * np.stack([rng.normal(0, 1, V), z[1] + 0.05 * rng.normal(0, 1, V)]))
    t, s = rng.normal(0, 2, (3, 500)), rng.normal(0, 2, (3, 500))
    masked = rng.permutation(500)
    t[0, masked[:100]] = s[0, masked[:100]] = -np.inf  # the same entries masked on both sides
    t[1, masked[:50]] = -np.inf  # teacher-only masks: reverse KL is infinite
    s[2, masked[:50]] = -np.inf  # student-only masks: forward KL is infinite
    add("masked", t, s)
    t = rng.normal(0, 1, (2, V))
    add("temperature", t, t + rng.normal(0, 0.5, (2, V)), temperature=0.1)
    t = rng.normal(0, 1, (1, V))
    add("temperature2", t, t + rng.normal(0, 0.5, (1, V)), temperature=2.0)
    t = rng.normal(0, 3, (1, 49152))
    s = 0.8 * t + rng.normal(0, 1.5, (1, 49152))
    t[0, -64:] = s[0, -64:] = -np.inf  # a padded vocabulary
    add("big", t, s)

    V = 64
    t, s = rng.normal(0, 2, (3, V)), rng.normal(0, 2, (3, V))
    t[1] *= 20
    s[1] = t[1] + 20 * rng.normal(0, 0.3, V)
    t[2, :4] = s[2, :4] = -np.inf
    t[2, 4:6] = -np.inf
    s[2, 6:8] = -np.inf
    add("small", t, s, gradients=True)
    # Ties decide what top-k keeps: 32 entries drawn from 5 values.
    t = rng.integers(0, 5, (1, 32)).astype(np.float64)
    s = rng.integers(0, 5, (1, 32)).astype(np.float64) * 0.5
    add("ties", t, s, gradients=True)
    return cases


def fmt(x):
    return repr(float(x))


def main():
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "divergence")
    os.makedirs(out_dir, exist_ok=True)
    lines, logits, grads = [], [], []
    offset, grad_offset = 0, 0
    for name, teacher, student, temperature, gradients in make_cases():
        N, V = teacher.shape
        lines.append(f"case {name} {N} {V} {fmt(temperature)} {offset}")
        logits += [teacher.ravel(), student.ravel()]
        offset += 2 * N * V
        tau = mp.mpf(temperature)
        delta = direction(V)
        for row in range(N):
            t_row = [float(x) for x in teacher[row]]
            s_row = [mp.mpf(float(x)) for x in student[row]]
            p = probabilities(t_row, tau)
            q = probabilities(s_row, 1)
            q_plus = probabilities([x + STEP * d for x, d in zip(s_row, delta)], 1)
            q_minus = probabilities([x - STEP * d for x, d in zip(s_row, delta)], 1)
            lines.append(
                f"metrics {row} {fmt(kl(p, q))} {fmt(kl(q, p))} {fmt(jsd(p, q, 0.5))} {fmt(entropy(p))} {fmt(entropy(q))}"
            )
            # Student distributions with one logit moved by -STEP and +STEP, for the finite differences;
            # a masked logit is a constant (gradient 0 by convention) and is not moved.
            nudged = []
            for v in range(V if gradients else 0):
                pair = None
                if s_row[v] != -INF:
                    pair = []
                    for sign in (-1, 1):
                        shifted = list(s_row)
                        shifted[v] = s_row[v] + sign * STEP
                        pair.append(probabilities(shifted, 1))
                nudged.append(pair)
            for config in CONFIGS:
                spec = f"{row} {config[0]} {fmt(config[1])} {fmt(config[2])} {config[3]}"
                kept = kept_entries(config[0], config[3], teacher[row], student[row])
                value = evaluate(config, kept, p, q)
                lines.append(f"value {spec} {fmt(value)}")
                if value == INF:
                    continue
                slope = (evaluate(config, kept, p, q_plus) - evaluate(config, kept, p, q_minus)) / (2 * STEP)
                lines.append(f"ddir {spec} {fmt(slope)}")
                if not gradients:
                    continue
                grad = np.zeros(V)
                for v, pair in enumerate(nudged):
                    if pair is not None:
                        down, up = (evaluate(config, kept, p, qn) for qn in pair)
                        grad[v] = float((up - down) / (2 * STEP))
                lines.append(f"grad {spec} {grad_offset}")
                grads.append(grad)
                grad_offset += V
            print(f"{name} row {row} done", file=sys.stderr)
    np.concatenate(logits).astype("<f4").tofile(os.path.join(out_dir, "logits.bin"))
    np.concatenate(grads).astype("<f8").tofile(os.path.join(out_dir, "grads.bin"))
    with open(os.path.join(out_dir, "expected.txt"), "w") as f:
        f.write("# written by tests/ref_divergence.py; do not edit\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
