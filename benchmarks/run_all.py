"""Run every benchmark with its defaults, one after the other, each in its own process.

    python benchmarks/run_all.py              # throughput.py, codec_throughput.py, loop_lag.py, session_memory.py,
                                              # capacity.py, passthrough.py, latency.py, memory.py (10 min)
    python benchmarks/run_all.py --quick      # shorter runs, for a smoke test

Exits non-zero if a benchmark fails (e.g. asyncrec lost frames of a non-live source).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "throughput.py": ["--frames", "120", "--repeat", "1"],
    "codec_throughput.py": ["--frames", "60", "--repeat", "1"],
    "loop_lag.py": ["--duration", "3"],
    "session_memory.py": ["--sizes", "640x480", "--seconds", "4"],
    "capacity.py": ["--quick"],
    "passthrough.py": ["--quick"],
    "latency.py": ["--seconds", "4"],
    "memory.py": ["--minutes", "0.5"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test, not a measurement")
    args = parser.parse_args()
    failed = []
    for script in QUICK:
        extra = QUICK[script] if args.quick else []
        print(f"\n===== {script} {' '.join(extra)}".rstrip(), flush=True)
        # A separate process each, so one benchmark's threads and memory never skew the next.
        if subprocess.run([sys.executable, str(HERE / script), *extra], check=False).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
