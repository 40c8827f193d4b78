"""A separate producer process: sends the benchmark's events through the broker.

    python -m benchmarks.producer --events 1000000 [--batch 1000] [--naive]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.events import events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--prefix", default="e")
    parser.add_argument("--naive", action="store_true", help="one message per event")
    args = parser.parse_args()
    # The synthetic data is made before the clock starts: the benchmark measures the system,
    # not this generator. Sending (encoding, batching, enqueueing) is measured.
    generated = list(events(args.events, args.prefix))
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # "go"
    started = time.perf_counter()
    messages = 0
    if args.naive:
        from benchmarks.naive import record_one_event

        for e in generated:
            record_one_event.send(e)
            messages += 1
    else:
        from workers.client import UsageBatcher

        with UsageBatcher(batch_size=args.batch) as batcher:
            for e in generated:
                batcher.add(**e)
        messages = batcher.sent_messages
    print(json.dumps({"messages": messages, "seconds": time.perf_counter() - started}),
          flush=True)


if __name__ == "__main__":
    main()
