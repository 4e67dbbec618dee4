// The load generator, run as its own process so that it never shares an event loop with what it measures:
//   node --import tsx scripts/bench/runner.ts <options.json>   one run, one JSON line on stdout
//   node --import tsx scripts/bench/runner.ts --serve          one JSON options line on stdin -> one result line
// Options (JSON): url, method, path, headers, body | bodiesFile (a JSON array of request bodies, used in turn:
// `cycle` reuses them, else each is sent once, e.g. single-use join tokens), connections, duration (s) or amount.
// A result: ok/s, latency percentiles (ms), status counts. `--serve` saves the process start per run.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';

export interface RunnerOptions {
  url: string;
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
  bodiesFile?: string;
  cycle?: boolean;
  /** Without `cycle`: the body sent once every one of bodiesFile has been (default: the last one again). */
  whenExhausted?: string;
  connections: number;
  duration?: number;
  amount?: number;
  timeoutSec?: number;
}

export interface RunnerResult {
  okPerSec: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationSec: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  statusCodes: Record<string, number>;
  bodiesUsed?: number;
}

export async function runOnce(o: RunnerOptions): Promise<RunnerResult> {
  const headers = { ...(o.headers ?? {}) };
  let used = 0;
  let setupRequest:
    | ((req: { body?: string | Buffer }, ctx: Record<string, unknown>) => { body?: string | Buffer })
    | undefined;
  if (o.bodiesFile) {
    const bodies = (JSON.parse(readFileSync(o.bodiesFile, 'utf8')) as string[]).map((b) => Buffer.from(b));
    if (bodies.length === 0) throw new Error('bodiesFile is empty');
    const exhausted = o.whenExhausted === undefined ? undefined : Buffer.from(o.whenExhausted);
    setupRequest = (req) => {
      const i = o.cycle ? used % bodies.length : Math.min(used, bodies.length - 1);
      const body = !o.cycle && used >= bodies.length && exhausted ? exhausted : bodies[i]!;
      used += 1;
      return { ...req, body };
    };
  }
  const result = await autocannon({
    url: o.url,
    connections: o.connections,
    pipelining: 1,
    timeout: o.timeoutSec ?? 30,
    ...(o.amount !== undefined ? { amount: o.amount } : { duration: o.duration ?? 5 }),
    requests: [
      {
        method: o.method,
        path: o.path,
        headers,
        ...(o.body !== undefined ? { body: o.body } : {}),
        ...(setupRequest ? { setupRequest } : {}),
      },
    ],
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, v] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = v.count;
  const ok = result['2xx'];
  const out: RunnerResult = {
    okPerSec: result.duration > 0 ? ok / result.duration : 0,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationSec: result.duration,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    mean: result.latency.mean,
    statusCodes,
    ...(o.bodiesFile ? { bodiesUsed: used } : {}),
  };
  return out;
}

async function main(): Promise<void> {
  const arg = process.argv[2];
  if (!arg) throw new Error('usage: runner.ts <options.json> | --serve');
  if (arg !== '--serve') {
    const result = await runOnce(JSON.parse(readFileSync(arg, 'utf8')) as RunnerOptions);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    try {
      const result = await runOnce(JSON.parse(line) as RunnerOptions);
      process.stdout.write(`${JSON.stringify({ result })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ error: e instanceof Error ? e.message : String(e) })}\n`);
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`runner: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
