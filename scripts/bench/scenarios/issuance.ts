// Scenario 1: JWT-SVID issuance (attest, entry, TTL, sign, re-verify, record in Redis) against oidc-provider's
// client_credentials JWT access tokens and a bare express floor, at concurrency 16 and 64.
import type { BenchContext } from '../lib/context.ts';
import { type LoadTarget, measureInterleaved, type TargetStats } from '../lib/measure.ts';
import { floorTarget, oidcTarget, type PeerProcess } from '../lib/peers.ts';
import { pairedRatio, type Summary } from '../lib/stats.ts';

export const CONCURRENCY = [16, 64] as const;

export interface IssuanceAtConcurrency {
  connections: number;
  writ: TargetStats;
  oidcProvider: TargetStats | null;
  floor: TargetStats | null;
  /** writ / oidc-provider, per round. */
  ratioOidcProvider: Summary | null;
  /** writ / floor, per round. */
  ratioFloor: Summary | null;
}

export interface IssuanceResult {
  attestor: string;
  evidence: string;
  levels: IssuanceAtConcurrency[];
}

/** Writ's JWT-SVID endpoint: one fixed body for reusable evidence, fresh single-use bodies otherwise. */
export function writJwtTarget(
  ctx: BenchContext,
  body: string,
  name = 'writ',
  broker = ctx.broker,
): LoadTarget {
  return {
    name,
    url: broker.url,
    method: 'POST',
    path: '/v1/svid/jwt',
    headers: { 'content-type': 'application/json' },
    ...(ctx.workload.reusable ? { body } : { bodies: (n: number) => ctx.workload.bodies(n) }),
    cpuMicros: () => broker.cpuMicros(),
    mainThreadCpuMicros: () => broker.mainThreadCpuMicros(),
    usesRedis: true,
    alive: () => !broker.child.exited(),
    // A cluster's primary serves nothing: only the single broker is recorded.
    ...(broker === ctx.broker ? { perf: { label: 'writ jwt', pid: broker.child.pid } } : {}),
  };
}

/** A representative request body (the floor parses the same one; reusable evidence sends only this). */
export async function jwtBody(ctx: BenchContext): Promise<string> {
  const [body] = await ctx.workload.bodies(1);
  return body!;
}

export async function runIssuance(
  ctx: BenchContext,
  peers: { oidc: PeerProcess | null; floor: PeerProcess | null },
  levels: readonly number[] = CONCURRENCY,
): Promise<IssuanceResult> {
  const body = await jwtBody(ctx);
  const writ = writJwtTarget(ctx, body);
  const targets: LoadTarget[] = [writ];
  if (peers.oidc) targets.push(oidcTarget(peers.oidc));
  if (peers.floor) targets.push(floorTarget(peers.floor, '/v1/svid/jwt', body));
  const out: IssuanceAtConcurrency[] = [];
  for (const connections of levels) {
    const stats = await measureInterleaved(ctx, targets, connections, { label: 'jwt' });
    const w = stats.writ!;
    const o = stats['oidc-provider'] ?? null;
    const f = stats.floor ?? null;
    out.push({
      connections,
      writ: w,
      oidcProvider: o,
      floor: f,
      ratioOidcProvider: o ? pairedRatio(w.okPerSec.runs, o.okPerSec.runs) : null,
      ratioFloor: f ? pairedRatio(w.okPerSec.runs, f.okPerSec.runs) : null,
    });
  }
  return { attestor: ctx.workload.attestor, evidence: ctx.workload.note, levels: out };
}
