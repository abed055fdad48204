// feathery.ts reads feathery's Redis Streams through a consumer group:
// acknowledgement after the handler succeeded, reclaim of entries left by a
// dead consumer, dead-letter after N deliveries, graceful stop.
import os from 'node:os';
import { createClient } from 'redis';

/** The fields feathery writes beside "d" in every stream entry, typed. */
export interface Envelope {
  /** Stream entry id and the stream it was read from. */
  id: string;
  stream: string;
  /** Event name, e.g. MESSAGE_CREATE. */
  t: string;
  /** Bot name in feathery's config; (bot, shard, session, seq) identifies an event. */
  bot: string;
  shard: number;
  session: string;
  seq: number;
  /** Guild id (a snowflake string), null when the event has none. */
  guild: string | null;
  /** The cached object before an UPDATE/DELETE event, null when there is none. */
  before: unknown;
  /** When feathery received the event. */
  at: Date;
  /** How many times the group delivered this entry (1 on the first). */
  deliveries: number;
}

/** An entry: its envelope and "d", the dispatch's data, typed as D. */
export interface Entry<D = unknown> extends Envelope {
  d: D;
}

export type Handler = (e: Entry) => Promise<void> | void;

export interface Options {
  url: string;
  streams: string[];
  group: string;
  /** This copy's name in the group; default host-pid. */
  consumer?: string;
  /** Where a newly created group starts: "0" (default) or "$". */
  startId?: string;
  count?: number;
  blockMs?: number;
  claimIdleMs?: number;
  maxDeliveries?: number;
  log?: (msg: string) => void;
}

export interface Stats {
  handled: number;
  acked: number;
  failed: number;
  claimed: number;
  deadLettered: number;
}

/** EntryError names the entry and field that could not be decoded. */
export class EntryError extends Error {}

const required = ['v', 't', 'd', 'bot', 'shard', 'session', 'seq', 'at'];

/** decodeEntry checks an entry's fields and types its envelope. */
export function decodeEntry(id: string, stream: string, f: Record<string, string>, deliveries: number): Entry {
  for (const k of required) {
    if (f[k] === undefined) throw new EntryError(`entry ${id}: field "${k}" is missing`);
  }
  if (f.v !== '1') throw new EntryError(`entry ${id}: field "v": unsupported envelope version "${f.v}"`);
  const int = (k: string): number => {
    const n = Number(f[k]);
    if (!Number.isSafeInteger(n) || n < 0) throw new EntryError(`entry ${id}: field "${k}": not a non-negative integer: "${f[k]}"`);
    return n;
  };
  const json = (k: string): unknown => {
    try {
      return JSON.parse(f[k]);
    } catch (err) {
      throw new EntryError(`entry ${id}: field "${k}": not JSON: ${(err as Error).message}`);
    }
  };
  return {
    id, stream, t: f.t, bot: f.bot, shard: int('shard'), session: f.session, seq: int('seq'),
    guild: f.guild && f.guild !== '0' ? f.guild : null,
    before: f.before ? json('before') : null,
    at: new Date(int('at')), deliveries, d: json('d'),
  };
}

type Raw = [string, string[] | null];

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

/** GroupConsumer reads streams through a consumer group; see run. */
export class GroupConsumer {
  private readonly o: Required<Options>;
  private readonly client;
  private stopping = false;
  readonly stats: Stats = { handled: 0, acked: 0, failed: 0, claimed: 0, deadLettered: 0 };

  constructor(o: Options) {
    // Options left undefined take the defaults.
    const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Options;
    this.o = {
      consumer: `${os.hostname()}-${process.pid}`, startId: '0', count: 100, blockMs: 2000,
      claimIdleMs: 30000, maxDeliveries: 5, log: (m) => process.stderr.write(m + '\n'), ...given,
    };
    this.client = createClient({ url: this.o.url });
    this.client.on('error', (err: Error) => this.o.log(`redis: ${err.message}`));
  }

  get consumer(): string {
    return this.o.consumer;
  }

  /** stop makes run finish what it has read, acknowledge it and return. */
  stop(): void {
    this.stopping = true;
  }

  private async cmd(args: string[]): Promise<unknown> {
    return (await this.client.sendCommand(args)) as unknown;
  }

  /**
   * run creates the group on each stream (if missing), handles this
   * consumer's own pending entries, then new entries, claiming entries idle
   * for longer than claimIdleMs every claimIdleMs/2. It returns after stop().
   */
  async run(handler: Handler): Promise<Stats> {
    const o = this.o;
    await this.client.connect();
    try {
      for (const s of o.streams) {
        try {
          await this.cmd(['XGROUP', 'CREATE', s, o.group, o.startId, 'MKSTREAM']);
        } catch (err) {
          if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
        }
      }
      for (const s of o.streams) await this.ownPending(s, handler);
      let nextClaim = 0;
      while (!this.stopping) {
        if (Date.now() >= nextClaim) {
          for (const s of o.streams) await this.claim(s, handler);
          nextClaim = Date.now() + Math.max(o.claimIdleMs / 2, 10);
          continue;
        }
        const block = Math.max(1, Math.min(o.blockMs, nextClaim - Date.now()));
        const reply = (await this.cmd(['XREADGROUP', 'GROUP', o.group, o.consumer, 'COUNT', String(o.count),
          'BLOCK', String(block), 'STREAMS', ...o.streams, ...o.streams.map(() => '>')])) as [string, Raw[]][] | null;
        // Entries read are handled even when stop() came meanwhile, so a
        // clean stop leaves nothing pending.
        for (const [stream, entries] of reply ?? []) await this.handleBatch(stream, entries, null, handler);
      }
    } finally {
      await this.client.quit();
    }
    return this.stats;
  }

  private async ownPending(stream: string, handler: Handler): Promise<void> {
    for (let last = '0'; !this.stopping;) {
      const reply = (await this.cmd(['XREADGROUP', 'GROUP', this.o.group, this.o.consumer, 'COUNT',
        String(this.o.count), 'STREAMS', stream, last])) as [string, Raw[]][] | null;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) return;
      await this.handleBatch(stream, entries, await this.deliveries(stream, entries), handler);
      last = entries[entries.length - 1][0];
    }
  }

  private async claim(stream: string, handler: Handler): Promise<void> {
    let cursor = '0-0';
    do {
      const [next, entries] = (await this.cmd(['XAUTOCLAIM', stream, this.o.group, this.o.consumer,
        String(this.o.claimIdleMs), cursor, 'COUNT', String(this.o.count)])) as [string, Raw[]];
      if (entries.length > 0) {
        this.stats.claimed += entries.length;
        await this.handleBatch(stream, entries, await this.deliveries(stream, entries), handler);
      }
      cursor = next;
    } while (cursor !== '0-0' && !this.stopping);
  }

  /** deliveries is each entry's delivery count while pending with us, 0 if not. */
  private async deliveries(stream: string, entries: Raw[]): Promise<number[]> {
    const out: number[] = [];
    for (const [id] of entries) {
      const rows = (await this.cmd(['XPENDING', stream, this.o.group, id, id, '1', this.o.consumer])) as [string, string, number, number][];
      out.push(rows.length > 0 ? Math.max(Number(rows[0][3]), 1) : 0);
    }
    return out;
  }

  private async handleBatch(stream: string, entries: Raw[], counts: number[] | null, handler: Handler): Promise<void> {
    const acks: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      const [id, flat] = entries[i];
      const deliveries = counts ? counts[i] : 1;
      if (deliveries === 0) continue; // acknowledged or claimed by another meanwhile
      if (flat === null) {
        acks.push(id); // trimmed from the stream while pending: nothing to handle
        continue;
      }
      let entry: Entry;
      try {
        entry = decodeEntry(id, stream, pairs(flat), deliveries);
      } catch (err) {
        await this.deadLetter(stream, id, flat, deliveries, (err as Error).message);
        continue;
      }
      if (deliveries > this.o.maxDeliveries) {
        await this.deadLetter(stream, id, flat, deliveries, `delivered ${deliveries} times without acknowledgement`);
        continue;
      }
      this.stats.handled++;
      try {
        await handler(entry);
        acks.push(id);
      } catch (err) {
        this.stats.failed++;
        const msg = err instanceof Error ? err.message : String(err);
        this.o.log(`entry ${id} (${entry.t}): handler failed (delivery ${deliveries}): ${msg}`);
        if (deliveries >= this.o.maxDeliveries) await this.deadLetter(stream, id, flat, deliveries, msg);
      }
    }
    if (acks.length > 0) {
      await this.cmd(['XACK', stream, this.o.group, ...acks]);
      this.stats.acked += acks.length;
    }
  }

  private async deadLetter(stream: string, id: string, flat: string[], deliveries: number, reason: string): Promise<void> {
    const dead = stream + ':dead';
    const f = pairs(flat);
    delete f.dead_from; delete f.dead_id; delete f.deliveries; delete f.error;
    const fv = Object.entries(f).flat();
    await this.cmd(['XADD', dead, '*', ...fv, 'dead_from', stream, 'dead_id', id,
      'deliveries', String(deliveries), 'error', reason.slice(0, 2000)]);
    await this.cmd(['XACK', stream, this.o.group, id]);
    this.stats.deadLettered++;
    this.o.log(`entry ${id} moved to ${dead}: ${reason}`);
  }
}
