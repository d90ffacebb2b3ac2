"""How often the prompt lab's decision rule finds a real gain, and how often it keeps a version that is no better.

A seeded simulated world, run through the same statistics the commands use (core/paired.py), not
through a model: each task's current prompt is right with probability BASELINE; the candidate breaks
BREAKS of the tasks the current prompt gets right and fixes enough of the wrong ones for a true gain
of 0, 5, 10 or 20 accuracy points. So every row has churn (tasks the two versions disagree on), as a
real revision does, and a zero gain is not "identical answers" but "as many broken as fixed".

The rule: keep the candidate when the 95% paired bootstrap interval's low end is above zero
(2,000 resamples). `improve` decides on its held-out part (30% of the annotated tasks by default);
`eval --compare` runs on all of them. Calling a model for every simulated run would measure the
model server, not the rule, and take hours; this finishes in minutes on 2 cores.

    python bench/promptlab.py                 # 100, 300, 1000 tasks; 200 runs per gain, 800 at zero gain
    python bench/promptlab.py --runs 100 --null-runs 200 --sizes 100 300
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import common  # noqa: F401  (the bench folder is on sys.path when a script runs; importing it adds the repository)
import numpy as np

from llm_backend.core.paired import Side, paired_bootstrap

BASELINE = 0.75
BREAKS = 0.05  # share of the current prompt's right answers the candidate gets wrong
GAINS = (0.0, 0.05, 0.10, 0.20)


def simulate(rng: np.random.Generator, tasks: int, gain: float) -> tuple[Side, Side]:
    right = rng.random(tasks) < BASELINE
    fixes = (gain + BASELINE * BREAKS) / (1 - BASELINE)  # P(candidate right | current wrong) for this gain
    roll = rng.random(tasks)
    candidate = np.where(right, roll >= BREAKS, roll < fixes)
    ones = np.ones(tasks)
    return Side.of(right.astype(float), ones), Side.of(candidate.astype(float), ones)


def kept_share(tasks: int, gain: float, runs: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    kept = 0
    for run in range(runs):
        current, candidate = simulate(rng, tasks, gain)
        kept += paired_bootstrap([(current, candidate)], seed=run).above_zero
    return kept / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000], help="annotated tasks")
    parser.add_argument("--holdout", type=float, default=0.3, help="improve's held-out share")
    parser.add_argument("--runs", type=int, default=200, help="simulated runs per cell with a real gain")
    parser.add_argument("--null-runs", type=int, default=800, help="simulated runs per cell with zero gain")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"baseline accuracy {BASELINE:.0%}, candidate breaks {BREAKS:.0%} of its right answers; share of runs "
          f"in which the 95% paired bootstrap interval (2,000 resamples) is above zero")
    header = ["annotated tasks", "decided on", *[f"gain {g * 100:.0f} pts" for g in GAINS]]
    rows = []
    for size in args.sizes:
        for label, tasks in (("improve: held out", math.ceil(args.holdout * size)), ("eval --compare: all", size)):
            cells = []
            for index, gain in enumerate(GAINS):
                runs = args.null_runs if gain == 0 else args.runs
                share = kept_share(tasks, gain, runs, seed=1000 * size + 10 * index + (tasks == size))
                # The zero-gain column is the false-accept rate: give its 95% Clopper-Pearson upper bound too.
                cells.append(f"{share:.1%}" if gain else f"{share:.1%} (≤{_upper(share, runs):.1%}, n={runs})")
            rows.append([str(size), f"{tasks} ({label})", *cells])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


def _upper(share: float, runs: int) -> float:
    from scipy.stats import binomtest

    return float(binomtest(round(share * runs), runs).proportion_ci(0.95).high)


if __name__ == "__main__":
    sys.exit(main())
