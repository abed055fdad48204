#!/usr/bin/env python3
"""A feathery consumer in Python: reads a stream through a consumer group,
handles each entry and acknowledges it once handled.

  REDIS_URL=redis://127.0.0.1:6379 STREAM='feathery:{bot:demo}:events' python3 consumer.py
  python3 consumer.py --stream s --group g --consumer c --max 100 --idle-exit 2000 --json

Every option can come from the command line or the environment; see README.md
beside this file. Needs redis-py (Debian: python3-redis).
"""

import argparse
import json
import os
import signal
import socket
import sys
import time

from feathery_consumer import GroupConsumer
from feathery_events import Entry, decode_event


def main() -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Read one of feathery's streams through a consumer group.")
    p.add_argument("--url", default=env("REDIS_URL", "redis://127.0.0.1:6379"))
    p.add_argument("--stream", default=env("STREAM", ""), help="stream key, e.g. feathery:{bot:demo}:events (several: comma-separated)")
    p.add_argument("--group", default=env("GROUP", "python-example"))
    p.add_argument("--consumer", default=env("CONSUMER", f"python-{socket.gethostname()}-{os.getpid()}"))
    p.add_argument("--start-id", default=env("START_ID", "0"))
    p.add_argument("--max", type=int, default=int(env("MAX_ENTRIES", "0")), help="exit after handling this many entries (0 = never)")
    p.add_argument("--idle-exit", type=int, default=int(env("IDLE_EXIT_MS", "0")), help="exit after this many ms without a new entry (0 = never)")
    p.add_argument("--claim-idle", type=int, default=int(env("CLAIM_IDLE_MS", "30000")))
    p.add_argument("--max-deliveries", type=int, default=int(env("MAX_DELIVERIES", "5")))
    p.add_argument("--block", type=int, default=int(env("BLOCK_MS", "2000")))
    p.add_argument("--count", type=int, default=int(env("COUNT", "100")))
    p.add_argument("--json", action="store_true", default=env("JSON") == "1")
    a = p.parse_args()
    if not a.stream:
        p.error("no stream given (--stream or STREAM)")
    for name in ("max", "idle_exit", "claim_idle", "block", "count", "max_deliveries"):
        if getattr(a, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")

    c = GroupConsumer(a.url, a.stream.split(","), a.group, a.consumer, a.start_id,
                      count=max(a.count, 1), block_ms=max(a.block, 1), claim_idle_ms=a.claim_idle,
                      max_deliveries=max(a.max_deliveries, 1))
    signals = 0

    def on_signal(signum, frame):
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(130)  # a second signal leaves at once
        c.stop()  # finish and acknowledge what was read, then exit

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    handled = 0
    last_new = time.monotonic()

    def handle(e: Entry) -> None:
        # This is where a bot's logic goes. Raising leaves the entry pending:
        # it is delivered again after --claim-idle, and dead-lettered after
        # --max-deliveries.
        nonlocal handled, last_new
        d = decode_event(e)  # "d" checked and typed (feathery_events.EVENTS)
        if a.json:
            out = {"stream": e["stream"], "id": e["id"], "t": e["t"], "bot": e["bot"], "shard": e["shard"],
                   "session": e["session"], "seq": e["seq"], "guild": e["guild"] or "",
                   "at": int(e["at"].timestamp() * 1000), "deliveries": e["deliveries"], "d": d}
            if e["before"] is not None:
                out["before"] = e["before"]
            print(json.dumps(out), flush=True)
        else:
            line = f'{e["id"]} {e["t"]} bot={e["bot"]} shard={e["shard"]} seq={e["seq"]}'
            if e["guild"]:
                line += f' guild={e["guild"]}'
            if e["t"] == "MESSAGE_CREATE":
                line += f' {d.get("author", {}).get("username", "?")}: {json.dumps(d.get("content", ""))}'
            print(line, flush=True)
        handled += 1
        last_new = time.monotonic()
        if a.max:
            # Never read more than is left, so nothing is left pending.
            c.count = max(1, min(c.count, a.max - handled))
            if handled >= a.max:
                c.stop()

    if a.idle_exit:
        # The idle watch stops the consumer between reads.
        def idle_check(signum, frame):
            if time.monotonic() - last_new >= a.idle_exit / 1000:
                c.stop()
        signal.signal(signal.SIGALRM, idle_check)
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    if a.max:
        c.count = min(c.count, a.max)
    stats = c.run(handle)
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(f"consumer: {c.consumer} {json.dumps(stats)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
