"""How close a run came to its plan, source by source: planned share, achieved share and their
difference in percentage points (`make demo` prints this after the run).

Usage: python scripts/demo_shares.py OUTPUT [--goal-pp 0.5]. Exit 1 when a source misses its
planned share by more than the goal.
"""
import argparse
import json
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("output")
    ap.add_argument("--goal-pp", type=float, default=0.5)
    args = ap.parse_args()
    proc = subprocess.run([sys.executable, "-m", "dolma_prep.pipeline.cli", "stats", args.output, "--json", "--quick"],
                          capture_output=True, text=True, check=True)
    stats = json.loads(proc.stdout)
    rows = []
    for name, s in stats["sources"].items():
        if s.get("planned_share") is None:
            continue
        rows.append((name, 100 * s["planned_share"], 100 * s["share"], s.get("achieved_vs_planned")))
    if not rows:
        print("no planned shares in this run (a proportion-only mix)")
        return 0
    print(f"{'source':<16} {'planned':>8} {'achieved':>9} {'diff (pp)':>10} {'tokens/plan':>12}")
    for name, p, a, r in rows:
        print(f"{name:<16} {p:7.2f}% {a:8.2f}% {a - p:+10.2f} {'-' if r is None else f'{r:.3f}':>12}")
    worst = max(rows, key=lambda x: abs(x[2] - x[1]))
    ok = abs(worst[2] - worst[1]) <= args.goal_pp
    print(f"largest difference: {worst[0]} {worst[2] - worst[1]:+.2f} percentage points "
          f"({'within' if ok else 'OUTSIDE'} the goal of {args.goal_pp} pp)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
