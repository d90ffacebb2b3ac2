"""Trust benchmark: what calibrate + accept deliver on a project whose true probabilities are known.

The noisy model of testkit/noisy_model.py (the same world the test LLM server's noisy mode answers
from): each task has a hidden probability p of being answered right (Beta(8, 1.5)); the model's
log-probability claims overconfident(p); the samples signal is the agreement of 5 samples with the
temperature-0 answer. Projects of N annotated + 1,000 unannotated tasks; per seed the backend's
procedure (calibrate on half the annotated tasks, certify on the other half with confidence 0.9,
accept the unannotated tasks above the threshold). Prints, per signal, annotated count and target
precision P: ECE raw and calibrated (held-out), how many runs certified anything, the coverage
(accepted / unannotated, mean over runs) against an oracle who knows every p and accepts the most
tasks whose mean p reaches P, and the realised precision of the accepted tasks (median, worst, and
how many of all the runs accepted a set whose precision fell below P: at most 1 - C of them, in expectation).

    python bench/trust.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import REPO  # noqa: F401  (puts the repository on sys.path)

from testkit.noisy_model import simulate, trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    print("| signal | annotated | P | ECE raw | ECE calibrated | runs certified | coverage | oracle coverage "
          "| realised precision (median / worst) | runs below P |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    started = time.monotonic()
    for samples, signal in ((0, "logprobs"), (5, "samples (k=5)")):
        for annotated in (200, 500, 1000):
            for precision in (0.9, 0.95):
                runs = [trial(simulate(annotated + 1000, seed, samples), annotated, precision, 0.9, seed)
                        for seed in range(args.seeds)]
                realised = [r.realised for r in runs if r.realised is not None]
                below = sum(value < precision for value in realised)
                print(f"| {signal} | {annotated:,} | {precision} "
                      f"| {statistics.mean(r.ece_before for r in runs):.3f} "
                      f"| {statistics.mean(r.ece_after for r in runs):.3f} "
                      f"| {sum(r.threshold is not None for r in runs)}/{len(runs)} "
                      f"| {statistics.mean(r.accepted / r.unannotated for r in runs):.1%} "
                      f"| {statistics.mean(r.oracle / r.unannotated for r in runs):.1%} "
                      + (f"| {statistics.median(realised):.3f} / {min(realised):.3f} " if realised else "| – ")
                      + f"| {below}/{len(runs)} |")
    print(f"\n{args.seeds} seeds per row; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
