"""Read feathery's Redis Streams through a consumer group (redis-py).

GroupConsumer acknowledges an entry only after its handler returned, re-reads
its own unacknowledged entries after a restart, takes over entries another
consumer left pending for longer than claim_idle_ms (XAUTOCLAIM), moves an
entry whose handler failed max_deliveries times to "<stream>:dead", and
after stop() handles and acknowledges what it has read, then returns.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import redis

from feathery_events import Entry, EntryError, decode_entry

Handler = Callable[[Entry], None]
_Raw = Tuple[str, Optional[List[str]]]  # entry id, flat field/value list (None: trimmed)


def _pairs(flat: Sequence[str]) -> Dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class GroupConsumer:
    def __init__(
        self,
        url: str,
        streams: Sequence[str],
        group: str,
        consumer: str = "",
        start_id: str = "0",
        count: int = 100,
        block_ms: int = 2000,
        claim_idle_ms: int = 30000,
        max_deliveries: int = 5,
        log: Callable[[str], None] = _log,
    ) -> None:
        if not streams:
            raise ValueError("no stream to read")
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.start_id = start_id
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.log = log
        self.stopping = False
        self.stats = {"handled": 0, "acked": 0, "failed": 0, "claimed": 0, "dead_lettered": 0}
        self.r = redis.Redis.from_url(url, decode_responses=True)
        # Raw replies: redis-py's parsers do not take entries trimmed while
        # pending (an id with no fields).
        for cmd in ("XREADGROUP", "XAUTOCLAIM", "XPENDING"):
            self.r.set_response_callback(cmd, lambda resp, **kw: resp)

    def stop(self) -> None:
        """Make run() finish what it has read, acknowledge it and return."""
        self.stopping = True

    def run(self, handler: Handler) -> Dict[str, int]:
        for s in self.streams:
            try:
                self.r.xgroup_create(s, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as err:
                if not str(err).startswith("BUSYGROUP"):
                    raise
        for s in self.streams:
            self._own_pending(s, handler)
        next_claim = 0.0
        while not self.stopping:
            now = time.monotonic()
            if now >= next_claim:
                for s in self.streams:
                    self._claim(s, handler)
                next_claim = time.monotonic() + max(self.claim_idle_ms / 2000, 0.01)
                continue
            block = max(1, min(self.block_ms, int((next_claim - now) * 1000)))
            args = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", self.count,
                    "BLOCK", block, "STREAMS", *self.streams, *([">"] * len(self.streams))]
            # Entries read are handled even when stop() came meanwhile, so a
            # clean stop leaves nothing pending.
            for stream, entries in self.r.execute_command(*args) or []:
                self._handle_batch(stream, entries, None, handler)
        self.r.close()
        return self.stats

    def _own_pending(self, stream: str, handler: Handler) -> None:
        last = "0"
        while not self.stopping:
            reply = self.r.execute_command("XREADGROUP", "GROUP", self.group, self.consumer,
                                           "COUNT", self.count, "STREAMS", stream, last)
            entries = reply[0][1] if reply else []
            if not entries:
                return
            self._handle_batch(stream, entries, self._deliveries(stream, entries), handler)
            last = entries[-1][0]

    def _claim(self, stream: str, handler: Handler) -> None:
        cursor = "0-0"
        while True:
            reply = self.r.execute_command("XAUTOCLAIM", stream, self.group, self.consumer,
                                           self.claim_idle_ms, cursor, "COUNT", self.count)
            cursor, entries = reply[0], reply[1]
            if entries:
                self.stats["claimed"] += len(entries)
                self._handle_batch(stream, entries, self._deliveries(stream, entries), handler)
            if cursor == "0-0" or self.stopping:
                return

    def _deliveries(self, stream: str, entries: List[_Raw]) -> List[int]:
        """Each entry's delivery count while pending with us, 0 if not."""
        out = []
        for entry_id, _ in entries:
            rows = self.r.execute_command("XPENDING", stream, self.group, entry_id, entry_id, 1, self.consumer)
            out.append(max(int(rows[0][3]), 1) if rows else 0)
        return out

    def _handle_batch(self, stream: str, entries: List[_Raw], counts: Optional[List[int]], handler: Handler) -> None:
        acks = []
        for i, (entry_id, flat) in enumerate(entries):
            deliveries = counts[i] if counts is not None else 1
            if deliveries == 0:
                continue  # acknowledged or claimed by another meanwhile
            if flat is None:
                acks.append(entry_id)  # trimmed from the stream while pending
                continue
            try:
                entry = decode_entry(stream, entry_id, _pairs(flat), deliveries)
            except EntryError as err:
                self._dead_letter(stream, entry_id, flat, deliveries, str(err))
                continue
            if deliveries > self.max_deliveries:
                self._dead_letter(stream, entry_id, flat, deliveries,
                                  f"delivered {deliveries} times without acknowledgement")
                continue
            self.stats["handled"] += 1
            try:
                handler(entry)
            except Exception as err:  # the handler's failure leaves the entry pending
                self.stats["failed"] += 1
                self.log(f"entry {entry_id} ({entry['t']}): handler failed (delivery {deliveries}): {err!r}")
                if deliveries >= self.max_deliveries:
                    self._dead_letter(stream, entry_id, flat, deliveries, repr(err))
                continue
            acks.append(entry_id)
        if acks:
            self.r.xack(stream, self.group, *acks)
            self.stats["acked"] += len(acks)

    def _dead_letter(self, stream: str, entry_id: str, flat: List[str], deliveries: int, reason: str) -> None:
        dead = stream + ":dead"
        fields = _pairs(flat)
        for k in ("dead_from", "dead_id", "deliveries", "error"):
            fields.pop(k, None)
        fields.update(dead_from=stream, dead_id=entry_id, deliveries=str(deliveries), error=reason[:2000])
        self.r.xadd(dead, fields)
        self.r.xack(stream, self.group, entry_id)
        self.stats["dead_lettered"] += 1
        self.log(f"entry {entry_id} moved to {dead}: {reason}")
