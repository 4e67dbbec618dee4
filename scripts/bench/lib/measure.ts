// Interleaved load runs against several targets: every round runs each target once, in a rotating order, so
// drift on the shared machine hits all of them alike. Single-use evidence is prepared before each run, untimed.
import type { RunnerOptions } from '../runner.ts';
import type { BenchContext } from './context.ts';
import { runLoad, writeBodies } from './load.ts';
import { sleep } from './procs.ts';
import { type Summary, summarize } from './stats.ts';

export interface LoadTarget {
  name: string;
  url: string;
  method: 'POST' | 'GET';
  path: string;
  headers: Record<string, string>;
  /** A fixed body for every request (reusable evidence, peers). */
  body?: string;
  /** Fresh bodies for one run (single-use evidence), each sent once. */
  bodies?: (count: number) => Promise<string[]>;
  /** Reusable bodies sent in turn (e.g. a pool of CSRs). */
  cycleBodies?: string[];
  /** CPU time of the server process (tree), microseconds, for CPU per request. */
  cpuMicros?: () => number | null;
  /** CPU time of the server's main thread (its event loop), microseconds; single-process servers only. */
  mainThreadCpuMicros?: () => number | null;
  /** Whether the target works against the private Redis (its CPU per request is then reported too). */
  usesRedis?: boolean;
  /** False once the server process is gone: the scenario then fails instead of recording zeros. */
  alive?: () => boolean;
  /** With `--perf`: the process Linux perf records during this target's measured runs, and its label. */
  perf?: { label: string; pid: number };
}

export interface RunStats {
  okPerSec: number;
  p50: number;
  p99: number;
  cpuUsPerOk: number | null;
  mainCpuUsPerOk: number | null;
  redisCpuUsPerOk: number | null;
  ok: number;
  failed: number;
}

export interface TargetStats {
  okPerSec: Summary;
  p50: Summary;
  p99: Summary;
  cpuUsPerOk: Summary | null;
  /** The event loop's share: what bounds one process's throughput. */
  mainCpuUsPerOk: Summary | null;
  redisCpuUsPerOk: Summary | null;
  runs: RunStats[];
  failedRequests: number;
}

async function oneRun(
  ctx: BenchContext,
  t: LoadTarget,
  connections: number,
  durationSec: number,
  estimate: Map<string, number>,
  measured = true,
): Promise<RunStats> {
  const base: RunnerOptions = {
    url: t.url,
    method: t.method,
    path: t.path,
    headers: t.headers,
    connections,
  };
  let options: RunnerOptions;
  if (t.bodies) {
    // Timed by duration like every other run (autocannon's `amount` mode ends on its 1 s tick, which skews
    // short runs). The pool holds 2.5 times what the last run managed; should it run dry, the runner sends an
    // empty body (400, counted as failed): a reused token would count as an attestation failure and soon have
    // the broker's rate limit refuse every request (429) for the rest of its window.
    const pool = Math.max(connections * 4, Math.round((estimate.get(t.name) ?? 2000) * durationSec * 2.5));
    const bodies = await t.bodies(pool + connections * 2 + 8);
    options = {
      ...base,
      duration: durationSec,
      bodiesFile: writeBodies(ctx.tmpDir, t.name, bodies),
      whenExhausted: '{}',
    };
  } else if (t.cycleBodies) {
    options = {
      ...base,
      duration: durationSec,
      cycle: true,
      bodiesFile: writeBodies(ctx.tmpDir, t.name, t.cycleBodies),
    };
  } else {
    options = { ...base, duration: durationSec, ...(t.body !== undefined ? { body: t.body } : {}) };
  }
  const cpuBefore = t.cpuMicros?.() ?? null;
  const mainBefore = t.mainThreadCpuMicros?.() ?? null;
  const redisBefore = t.usesRedis ? ctx.redisCpuMicros() : null;
  const r =
    measured && ctx.perf && t.perf
      ? await ctx.perf.around(`${t.perf.label} c=${connections}`, t.perf.pid, () =>
          runLoad(ctx.tmpDir, options),
        )
      : await runLoad(ctx.tmpDir, options);
  const cpuAfter = t.cpuMicros?.() ?? null;
  const mainAfter = t.mainThreadCpuMicros?.() ?? null;
  const redisAfter = t.usesRedis ? ctx.redisCpuMicros() : null;
  estimate.set(t.name, r.okPerSec);
  const failed = r.non2xx + r.errors + r.timeouts;
  if (failed > 0 && t.alive) {
    // A crashed server is reaped a moment after its sockets reset.
    for (let i = 0; i < 30 && t.alive(); i++) await sleep(100);
    if (!t.alive()) throw new Error(`${t.name} died during a run (${failed} failed requests)`);
  }
  if (failed > 0) {
    ctx.log(
      `  ! ${t.name} c=${connections}: ${failed} failed requests ${JSON.stringify(r.statusCodes)} ` +
        `(errors ${r.errors}, timeouts ${r.timeouts})`,
    );
  }
  return {
    okPerSec: r.okPerSec,
    p50: r.p50,
    p99: r.p99,
    cpuUsPerOk: cpuBefore !== null && cpuAfter !== null && r.ok > 0 ? (cpuAfter - cpuBefore) / r.ok : null,
    mainCpuUsPerOk:
      mainBefore !== null && mainAfter !== null && r.ok > 0 ? (mainAfter - mainBefore) / r.ok : null,
    redisCpuUsPerOk:
      redisBefore !== null && redisAfter !== null && r.ok > 0 ? (redisAfter - redisBefore) / r.ok : null,
    ok: r.ok,
    failed,
  };
}

const warmedUp = new Set<string>();

/**
 * A warm-up run per target (discarded; longer the first time a server is seen, for its JIT), then `rounds`
 * interleaved runs.
 */
export async function measureInterleaved(
  ctx: BenchContext,
  targets: LoadTarget[],
  connections: number,
  opts: { rounds?: number; durationSec?: number; label?: string } = {},
): Promise<Record<string, TargetStats>> {
  const rounds = opts.rounds ?? ctx.rounds;
  const durationSec = opts.durationSec ?? ctx.durationSec;
  const estimate = new Map<string, number>();
  const runs = new Map<string, RunStats[]>(targets.map((t) => [t.name, []]));
  for (const t of targets) {
    const key = `${t.url}${t.path}`;
    const first = !warmedUp.has(key);
    warmedUp.add(key);
    await oneRun(ctx, t, connections, first ? (ctx.quick ? 1.5 : 5) : ctx.quick ? 0.5 : 1, estimate, false);
  }
  for (let round = 0; round < rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    const line: string[] = [];
    for (const t of order) {
      const r = await oneRun(ctx, t, connections, durationSec, estimate);
      runs.get(t.name)!.push(r);
      line.push(`${t.name} ${Math.round(r.okPerSec)}/s`);
    }
    ctx.log(`  ${opts.label ?? ''} c=${connections} round ${round + 1}/${rounds}: ${line.join(', ')}`);
  }
  const out: Record<string, TargetStats> = {};
  for (const t of targets) {
    const rs = runs.get(t.name)!;
    const cpu = rs.map((r) => r.cpuUsPerOk).filter((v): v is number => v !== null);
    const redisCpu = rs.map((r) => r.redisCpuUsPerOk).filter((v): v is number => v !== null);
    const mainCpu = rs.map((r) => r.mainCpuUsPerOk).filter((v): v is number => v !== null);
    out[t.name] = {
      okPerSec: summarize(rs.map((r) => r.okPerSec)),
      p50: summarize(rs.map((r) => r.p50)),
      p99: summarize(rs.map((r) => r.p99)),
      cpuUsPerOk: cpu.length === rs.length && cpu.length > 0 ? summarize(cpu) : null,
      mainCpuUsPerOk: mainCpu.length === rs.length && mainCpu.length > 0 ? summarize(mainCpu) : null,
      redisCpuUsPerOk: redisCpu.length === rs.length && redisCpu.length > 0 ? summarize(redisCpu) : null,
      runs: rs,
      failedRequests: rs.reduce((n, r) => n + r.failed, 0),
    };
  }
  return out;
}
