"""A separate producer process: sends the benchmark's events through the broker.

    python -m benchmarks.producer --events 1000000 [--batch 1000] [--naive]
    python -m benchmarks.producer --events 1000000 --http URL --key KEY [--senders 4]
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
    parser.add_argument("--http", help="send through the HTTP API at this URL instead")
    parser.add_argument("--key", help="the API key (with --http)")
    parser.add_argument("--senders", type=int, default=4,
                        help="with --http: threads sending at once, as an app's servers do")
    args = parser.parse_args()
    # The synthetic data is made before the clock starts: the benchmark measures the system,
    # not this generator. Sending (encoding, batching, enqueueing) is measured.
    generated = list(events(args.events, args.prefix))
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # "go"
    started = time.perf_counter()
    messages = 0
    if args.http:
        messages = _send_http(generated, args)
    elif args.naive:
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


def _send_http(generated: list[dict[str, object]], args: argparse.Namespace) -> int:
    """The Python client's UsageBatcher, ``senders`` threads each with a share."""
    from concurrent.futures import ThreadPoolExecutor

    from billing_client import BillingClient, UsageBatcher

    shares = [generated[i::args.senders] for i in range(args.senders)]

    def send(share: list[dict[str, object]]) -> int:
        with BillingClient(args.http, args.key, timeout=60) as client:
            with UsageBatcher(client, batch_size=args.batch) as batcher:
                for e in share:
                    batcher.add(**e)  # type: ignore[arg-type]
            return len(batcher.batches)

    with ThreadPoolExecutor(args.senders) as pool:
        return sum(pool.map(send, shares))


if __name__ == "__main__":
    main()
