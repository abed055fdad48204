#!/usr/bin/env node
// A feathery consumer in Node: reads a stream through a consumer group,
// handles each entry, and acknowledges it (XACK) once handled.
//
//   REDIS_URL=redis://127.0.0.1:6379 STREAM='feathery:{bot:mybot}:events' node consumer.js
//   node consumer.js --stream s --group g --consumer c --max 100 --idle-exit 2000 --json
//
// Every option can come from the command line or the environment; see
// README.md beside this file.

import { createClient } from 'redis';
import os from 'node:os';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.REDIS_URL || 'redis://127.0.0.1:6379' },
    stream: { type: 'string', default: process.env.STREAM || '' },
    group: { type: 'string', default: process.env.GROUP || 'node-example' },
    consumer: { type: 'string', default: process.env.CONSUMER || `node-${os.hostname()}-${process.pid}` },
    'start-id': { type: 'string', default: process.env.START_ID || '0' },
    max: { type: 'string', default: process.env.MAX_ENTRIES || '0' },
    'idle-exit': { type: 'string', default: process.env.IDLE_EXIT_MS || '0' },
    'claim-idle': { type: 'string', default: process.env.CLAIM_IDLE_MS || '30000' },
    block: { type: 'string', default: process.env.BLOCK_MS || '2000' },
    count: { type: 'string', default: process.env.COUNT || '100' },
    json: { type: 'boolean', default: process.env.JSON === '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

function usage(code) {
  process.stderr.write(`usage: node consumer.js --stream KEY [--url URL] [--group G] [--consumer C]
  [--start-id 0|$] [--max N] [--idle-exit MS] [--claim-idle MS] [--block MS] [--count N] [--json]
env: REDIS_URL STREAM GROUP CONSUMER START_ID MAX_ENTRIES IDLE_EXIT_MS CLAIM_IDLE_MS BLOCK_MS COUNT JSON=1
`);
  process.exit(code);
}

if (args.help) usage(0);
if (!args.stream) {
  process.stderr.write('consumer: no stream given (--stream or STREAM)\n');
  usage(2);
}

function intOption(name) {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`consumer: --${name} must be a non-negative integer, got "${args[name]}"\n`);
    process.exit(2);
  }
  return v;
}
const max = intOption('max'); // stop after this many acknowledged entries; 0 = never
const idleExit = intOption('idle-exit'); // stop after this long without new entries; 0 = never
const claimIdle = intOption('claim-idle'); // take over entries pending longer than this
const block = Math.max(1, intOption('block'));
const count = Math.max(1, intOption('count'));
const { stream, group, consumer } = args;

let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (stopping) process.exit(130); // second signal: leave at once
    stopping = true; // finish the entry in hand, then stop
  });
}

// handle is where a bot's logic goes. Throwing leaves the entry pending, so
// it is delivered again (to this or another consumer) later.
function handle(id, f) {
  const d = JSON.parse(f.d); // the dispatch's "d", as Discord sent it
  if (args.json) {
    process.stdout.write(JSON.stringify({
      stream, id, t: f.t, bot: f.bot, shard: Number(f.shard), session: f.session,
      seq: Number(f.seq), guild: f.guild || '', at: Number(f.at), d,
      ...(f.before ? { before: JSON.parse(f.before) } : {}),
    }) + '\n');
  } else {
    let line = `${id} ${f.t} bot=${f.bot} shard=${f.shard} seq=${f.seq}`;
    if (f.guild) line += ` guild=${f.guild}`;
    if (f.t === 'MESSAGE_CREATE') line += ` ${d.author?.username ?? '?'}: ${JSON.stringify(d.content ?? '')}`;
    process.stdout.write(line + '\n');
  }
}

const client = createClient({ url: args.url });
client.on('error', (err) => process.stderr.write(`consumer: redis: ${err.message}\n`));
await client.connect();

try {
  await client.xGroupCreate(stream, group, args['start-id'], { MKSTREAM: true });
} catch (err) {
  if (!String(err.message).startsWith('BUSYGROUP')) throw err; // the group exists: fine
}

let acked = 0;
let failed = 0;

// process handles one entry and acknowledges it; fields === null means the
// entry was trimmed away while pending: acknowledge it, there is nothing to do.
async function processEntry(id, fields) {
  if (fields !== null) {
    try {
      handle(id, fields);
    } catch (err) {
      failed++;
      process.stderr.write(`consumer: entry ${id}: ${err.message}; left pending\n`);
      return;
    }
  }
  await client.xAck(stream, group, id);
  if (fields !== null) acked++;
}

const done = () => stopping || (max > 0 && acked >= max);

// 1. Entries this consumer was given before a restart but never acknowledged
// (raw command: an entry deleted meanwhile comes back with nil fields).
for (let last = '0'; !done();) {
  const reply = await client.sendCommand(['XREADGROUP', 'GROUP', group, consumer, 'COUNT', String(count), 'STREAMS', stream, last]);
  const entries = reply?.[0]?.[1] ?? [];
  if (entries.length === 0) break;
  for (const [id, flat] of entries) {
    if (done()) break;
    let fields = null;
    if (flat) {
      fields = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
    }
    await processEntry(id, fields);
    last = id;
  }
}

// 2. New entries, with a periodic XAUTOCLAIM of entries left by dead consumers.
let lastNew = Date.now();
let nextClaim = 0;
while (!done()) {
  if (claimIdle > 0 && Date.now() >= nextClaim) {
    let cursor = '0-0';
    do {
      const r = await client.xAutoClaim(stream, group, consumer, claimIdle, cursor, { COUNT: count });
      for (const m of r.messages) {
        if (done()) break;
        if (m) await processEntry(m.id, m.message);
      }
      cursor = r.nextId;
    } while (cursor !== '0-0' && !done());
    nextClaim = Date.now() + Math.max(claimIdle / 2, 10);
  }
  let wait = block;
  if (idleExit > 0) wait = Math.min(wait, Math.max(1, lastNew + idleExit - Date.now()));
  if (claimIdle > 0) wait = Math.min(wait, Math.max(1, nextClaim - Date.now()));
  // With --max, never take more than is left, so nothing is left pending.
  const n = max > 0 ? Math.min(count, max - acked) : count;
  const reply = await client.xReadGroup(group, consumer, { key: stream, id: '>' }, { COUNT: n, BLOCK: wait });
  const messages = reply?.[0]?.messages ?? [];
  if (messages.length === 0) {
    if (idleExit > 0 && Date.now() - lastNew >= idleExit) break;
    continue;
  }
  lastNew = Date.now();
  for (const m of messages) {
    if (done()) break; // the rest stays pending with this consumer
    await processEntry(m.id, m.message);
  }
}

process.stderr.write(`consumer: ${consumer} acked ${acked} entries, ${failed} failed\n`);
await client.quit();
