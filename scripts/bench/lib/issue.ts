// Issuing through the API outside the timed runs: one credential at a time, or a task filled in bulk.
import type { BenchContext } from './context.ts';
import { runLoad, writeBodies } from './load.ts';
import { AUDIENCE } from './workload.ts';

export interface IssuedSvid {
  token: string;
  id: string;
  task: string;
  spiffeId: string;
  expiresAt: number;
}

export async function issueOne(
  ctx: BenchContext,
  opts: { task?: string; audience?: string[] } = {},
): Promise<IssuedSvid> {
  const res = await ctx.http.request('POST', '/v1/svid/jwt', {
    body: {
      attestor: ctx.workload.attestor,
      evidence: await ctx.workload.evidence(),
      audience: opts.audience ?? [AUDIENCE],
      ...(opts.task !== undefined ? { task: opts.task } : {}),
    },
  });
  if (res.status !== 200) throw new Error(`issuing a JWT-SVID: ${res.status} ${res.text.slice(0, 300)}`);
  return res.json as IssuedSvid;
}

/**
 * Issues `count` credentials through the API with the load runner (64 connections), each in `taskOf(i)` (no
 * task: each credential opens its own generated task). Returns how many succeeded. (autocannon's `amount`
 * mode ends on its 1 s tick, so `seconds` is rounded up to a whole second: a rate, not a benchmark.)
 */
export async function issueMany(
  ctx: BenchContext,
  count: number,
  taskOf?: (i: number) => string,
  connections = 64,
): Promise<{ ok: number; failed: number; seconds: number }> {
  if (count <= 0) return { ok: 0, failed: 0, seconds: 0 };
  const extra = taskOf ? (i: number) => ({ task: taskOf(i) }) : undefined;
  const base = {
    url: ctx.broker.url,
    method: 'POST' as const,
    path: '/v1/svid/jwt',
    headers: { 'content-type': 'application/json' },
    connections: Math.min(connections, count),
    amount: count,
  };
  let r: Awaited<ReturnType<typeof runLoad>>;
  if (ctx.workload.reusable && !taskOf) {
    const [body] = await ctx.workload.bodies(1);
    r = await runLoad(ctx.tmpDir, { ...base, body: body! });
  } else {
    // Every client builds one request ahead, so single-use evidence needs a little slack.
    const slack = ctx.workload.reusable ? 0 : base.connections * 2 + 8;
    const bodies = await ctx.workload.bodies(
      count + slack,
      extra ? (i) => extra(Math.min(i, count - 1)) : undefined,
    );
    r = await runLoad(ctx.tmpDir, {
      ...base,
      bodiesFile: writeBodies(ctx.tmpDir, 'issue', bodies),
      ...(ctx.workload.reusable ? {} : { whenExhausted: '{}' }),
    });
  }
  return { ok: r.ok, failed: r.non2xx + r.errors + r.timeouts, seconds: r.durationSec };
}
