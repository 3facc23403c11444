"""Pruning runs on an idle and on a busy machine, with OpenMP threads that spin or sleep.

torch's OpenMP runtime (libgomp) lets a thread that runs out of work spin before it sleeps.
When another process keeps a core busy, a spinning thread takes CPU from the one that still
has work, and every parallel region waits for the slowest thread. ``import core`` sets
``OMP_WAIT_POLICY=PASSIVE`` (unless it is set) before torch loads. This script runs each
workload in a fresh process with the policy as torch leaves it (variable unset: spin first)
and with ``PASSIVE``, alternating, first on the idle machine and then beside one process that
keeps a core busy (a Python busy loop), and prints the median seconds and their ratio. The
thread count is the same both ways; the script checks that the results are equal.

    python benchmarks/busy_machine.py [--rounds 3] [--workloads mlpnet_chitapp,resnet20_chita,...]

The digits demo workloads (``--workloads digits_mlp_chita,digits_cnn_chita``) need no ../shared;
each of their figures is the median of 5 runs in one process, after a warm-up run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (model, method, sparsity, recalibrate BatchNorm); the digits demo models need no ../shared
WORKLOADS = {
    "mlpnet_chitapp": ("mlpnet", "chita++", 0.98, None),
    "resnet20_chita": ("resnet20", "chita", 0.8, False),
    "resnet20_chita_recal": ("resnet20", "chita", 0.8, True),
    "digits_mlp_chita": ("digits_mlp", "chita", 0.8, None),
    "digits_cnn_chita": ("digits_cnn", "chita", 0.8, None),
}
DEMO_REPEAT = 5  # a demo run takes a fraction of a second: the median of this many, after one
POLICIES = ("spin", "passive")  # torch's default (variable unset), OMP_WAIT_POLICY=PASSIVE


def child(workload: str) -> None:
    """Run one workload in this process (torch loads here, with the environment as given)."""
    import torch  # first: the wait policy is the one in the environment now

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from shared_models import load_shared

    from core.pruning import PruneRequest, prune

    model, method, sparsity, recal = WORKLOADS[workload]
    if model.startswith("digits"):
        from core.data import load_bundle
        from core.demo import load_demo

        loaded, bundle, repeat = load_demo(model), load_bundle("digits"), DEMO_REPEAT
        req = PruneRequest(method=method, sparsity=sparsity, recalibrate_bn=recal)  # the GUI's
        prune(loaded.model, bundle.calibration, req, arch=model)  # warm-up
    else:
        shared = load_shared(model)
        if shared is None:
            sys.exit(2)
        (loaded, bundle), repeat = shared, 1
        req = PruneRequest(method=method, sparsity=sparsity, samples=1000, recalibrate_bn=recal)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = prune(loaded.model, bundle.calibration, req, arch=model)
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    digest = hashlib.sha256()
    for name in sorted(res.weights):
        digest.update(res.weights[name].contiguous().numpy().tobytes())
    print(json.dumps({"seconds": seconds, "digest": digest.hexdigest()[:16],
                      "threads": torch.get_num_threads()}))


def run_child(workload: str, policy: str) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    out = subprocess.run([sys.executable, __file__, "--child", workload], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _each(runs: list[dict]) -> str:
    return " / ".join(f"{g['seconds']:.2f}" for g in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    names = args.workloads.split(",")
    if any(not n.startswith("digits") for n in names) and not (ROOT.parent / "shared").is_dir():
        print(f"{ROOT.parent / 'shared'} is missing: this benchmark needs the shared checkpoints.",
              file=sys.stderr)
        return 2
    rows = []
    for load in ("idle", "one core busy"):
        hog = None
        if load != "idle":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for name in names:
                got: dict[str, list[dict]] = {p: [] for p in POLICIES}
                for r in range(args.rounds):
                    order = POLICIES if r % 2 == 0 else POLICIES[::-1]
                    for policy in order:
                        got[policy].append(run_child(name, policy))
                rows.append((name, load, got))
                print(f"  {name}, {load}: " + "; ".join(f"{p} {_each(got[p])}" for p in POLICIES),
                      file=sys.stderr, flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    threads = rows[0][2]["spin"][0]["threads"]
    print(f"{os.cpu_count()} CPUs, torch threads {threads}, {args.rounds} alternating rounds, "
          "each run a fresh process; seconds of `prune` (n = 1000 on the shared models, the GUI's "
          "request on the digits demo), median of the rounds\n")
    print("| workload | machine | spinning (torch default) s | passive s | passive ÷ spinning | same result |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, load, got in rows:
        spin = statistics.median(g["seconds"] for g in got["spin"])
        passive = statistics.median(g["seconds"] for g in got["passive"])
        same = len({g["digest"] for p in POLICIES for g in got[p]}) == 1
        model, method, sparsity, recal = WORKLOADS[name]
        label = f"{model} {method} {sparsity}" + (" + recal" if recal else "")
        print(f"| {label} | {load} | {spin:.2f} ({_each(got['spin'])}) | {passive:.2f} "
              f"({_each(got['passive'])}) | {passive / spin:.2f}× | {'yes' if same else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
