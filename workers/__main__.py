"""``python -m workers``: the Procfile's worker — dramatiq, ``BILLING_WORKER_PROCESSES`` ×
``BILLING_WORKER_THREADS``, consuming the billing queue with every actor.

It is dramatiq's own command line with the engine's logging: with
``BILLING_LOG_FORMAT=json`` every line the processes write — the engine's, dramatiq's, a
traceback — is one JSON object. Any of dramatiq's options may follow
(``python -m workers --processes 4 --threads 8``).
"""

from __future__ import annotations

import sys

from dramatiq.cli import main as dramatiq_main
from dramatiq.cli import make_argument_parser

from services import logs
from services.settings import settings


def main(argv: list[str]) -> int:
    config = settings()
    logs.configure(config.log_format, config.log_level)
    args = make_argument_parser().parse_args(  # type: ignore[no-untyped-call]
        ["workers.worker", "--queues", "billing", "--skip-logging", *argv])
    return int(dramatiq_main(args) or 0)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
