// What the HTTP layer costs per request, measured side by side: node:http, express 5 with the body read by hand,
// express 5 with express.json, and the benchmark's express floor (res.json). The measurement behind the issuance
// lane (src/http/issuance-lane.ts, docs/performance.md). Run: npx tsx scripts/bench/http-floors.ts [--rounds=N]
import * as path from 'node:path';
import autocannon from 'autocannon';
import { mainThreadCpuMicros, startChild } from './lib/procs.ts';
import { median } from './lib/stats.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const rounds = Number(/--rounds=(\d+)/.exec(process.argv.join(' '))?.[1] ?? 5);
const body = JSON.stringify({
  attestor: 'static_key',
  evidence: { key: 'k'.repeat(43) },
  audience: ['https://api.example'],
});

const targets = [
  { name: 'node:http', script: 'scripts/bench/peers/http-floor.ts', mode: 'node' },
  { name: 'express, body by hand', script: 'scripts/bench/peers/http-floor.ts', mode: 'express-raw' },
  { name: 'express + express.json', script: 'scripts/bench/peers/http-floor.ts', mode: 'express-json' },
  { name: 'express floor (res.json)', script: 'scripts/bench/peers/floor.ts', mode: undefined },
];

const servers = await Promise.all(
  targets.map(async (t) => {
    const child = startChild(t.name, process.execPath, [
      '--import',
      'tsx',
      path.join(ROOT, t.script),
      '0',
      ...(t.mode ? [t.mode] : []),
    ]);
    const ready = await child.readyLine(30_000);
    return { ...t, child, url: `http://127.0.0.1:${String(ready.port)}/v1/svid/jwt` };
  }),
);

const run = async (url: string, seconds: number) =>
  autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: 64,
    duration: seconds,
  });

try {
  for (const s of servers) await run(s.url, 2); // warm-up
  const results = new Map<string, { perS: number[]; cpu: number[] }>(
    servers.map((s) => [s.name, { perS: [], cpu: [] }]),
  );
  for (let r = 0; r < rounds; r++) {
    // A rotating order, so the machine's bursts of noise hit every target alike.
    for (let i = 0; i < servers.length; i++) {
      const s = servers[(i + r) % servers.length] as (typeof servers)[number];
      const before = mainThreadCpuMicros(s.child.pid) ?? 0;
      const result = await run(s.url, 3);
      const used = (mainThreadCpuMicros(s.child.pid) ?? 0) - before;
      const ok = result.requests.total - result.non2xx - result.errors;
      const stats = results.get(s.name);
      stats?.perS.push(ok / 3);
      stats?.cpu.push(used / Math.max(1, ok));
    }
  }
  console.log(`HTTP layer per request: median of ${rounds} interleaved runs of 3 s, 64 connections`);
  console.log('target                      req/s     main-thread µs/req');
  for (const [name, s] of results) {
    console.log(
      `${name.padEnd(26)}  ${String(Math.round(median(s.perS))).padStart(7)}   ${String(Math.round(median(s.cpu))).padStart(6)}` +
        ` (${Math.round(Math.min(...s.cpu))}-${Math.round(Math.max(...s.cpu))})`,
    );
  }
} finally {
  await Promise.all(servers.map((s) => s.child.stop(5_000)));
}
