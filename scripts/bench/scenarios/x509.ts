// Scenario 2: X.509-SVID issuance from pre-generated P-256 CSRs, against the express floor; CPU per certificate.
import type { BenchContext } from '../lib/context.ts';
import { Skipped } from '../lib/context.ts';
import { p256Csr } from '../lib/csr.ts';
import { type LoadTarget, measureInterleaved, type TargetStats } from '../lib/measure.ts';
import { floorTarget, type PeerProcess } from '../lib/peers.ts';
import { pairedRatio, type Summary } from '../lib/stats.ts';

export interface X509Result {
  connections: number;
  writ: TargetStats;
  floor: TargetStats | null;
  ratioFloor: Summary | null;
  csrs: number;
}

const PATH = '/v1/svid/x509';

/** One real request first: a build without the endpoint answers 404, and the scenario reports why. */
async function probe(ctx: BenchContext, csr: string): Promise<void> {
  const res = await ctx.http.request('POST', PATH, {
    body: { attestor: ctx.workload.attestor, evidence: await ctx.workload.evidence(), csr },
  });
  if (res.status === 404) {
    const code = typeof res.json?.error === 'string' ? ` ${res.json.error}` : '';
    throw new Skipped(`POST ${PATH} answers 404${code}: the X.509 CA is not in this build yet`);
  }
  if (res.status !== 200 || typeof res.json?.certificate !== 'string') {
    throw new Skipped(`POST ${PATH} answers ${res.status} ${res.text.slice(0, 200)}`);
  }
}

export async function runX509(
  ctx: BenchContext,
  floor: PeerProcess | null,
  connections = 16,
): Promise<X509Result> {
  const csrCount = ctx.quick ? 64 : 256;
  const csrs = Array.from({ length: csrCount }, (_, i) => p256Csr(`writ-bench-${i}`));
  await probe(ctx, csrs[0]!);
  const withCsr = (i: number) => ({ csr: csrs[i % csrs.length]! });
  const [sample] = await ctx.workload.bodies(1, withCsr, 'x509');
  const writ: LoadTarget = {
    name: 'writ',
    url: ctx.broker.url,
    method: 'POST',
    path: PATH,
    headers: { 'content-type': 'application/json' },
    ...(ctx.workload.reusable
      ? { cycleBodies: await ctx.workload.bodies(csrs.length, withCsr, 'x509') }
      : { bodies: (n: number) => ctx.workload.bodies(n, withCsr, 'x509') }),
    cpuMicros: () => ctx.broker.cpuMicros(),
    mainThreadCpuMicros: () => ctx.broker.mainThreadCpuMicros(),
    usesRedis: true,
    alive: () => !ctx.broker.child.exited(),
    perf: { label: 'writ x509', pid: ctx.broker.child.pid },
  };
  const targets = [writ];
  if (floor) targets.push(floorTarget(floor, PATH, sample!));
  const stats = await measureInterleaved(ctx, targets, connections, { label: 'x509' });
  const w = stats.writ!;
  const f = stats.floor ?? null;
  return {
    connections,
    writ: w,
    floor: f,
    ratioFloor: f ? pairedRatio(w.okPerSec.runs, f.okPerSec.runs) : null,
    csrs: csrCount,
  };
}
