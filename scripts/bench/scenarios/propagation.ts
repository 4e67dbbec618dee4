// Scenario 4: revocation propagation. A task of N credentials is completed; from the moment the complete
// response arrives we time (a) introspection answering inactive, (b) the SSE-fed verify SDK rejecting (the
// task's feed event), and, for information, (c) the fan-out: every credential's own event on the feed.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { isVerifyError } from '../../../src/verify/index.ts';
import type { BenchContext } from '../lib/context.ts';
import { issueMany, issueOne } from '../lib/issue.ts';
import type { RelyingParty } from '../lib/relying-party.ts';
import { percentile, round } from '../lib/stats.ts';
import { AUDIENCE } from '../lib/workload.ts';

export interface PropagationSize {
  credentials: number;
  repeats: number;
  /** ms from the complete response to introspection answering inactive (one request's round trip included). */
  introspection: { p50: number; p99: number; max: number; samples: number[] };
  /** ms from the complete response to the SDK rejecting (0 when its event arrived before the response). */
  sdk: { p50: number; p99: number; max: number; samples: number[] };
  /** ms from sending the complete request to the SDK rejecting, and to the 202 (for scale). */
  sdkSinceRequest: { p50: number; p99: number; max: number; samples: number[] };
  completeResponse: { p50: number; p99: number; max: number; samples: number[] };
  /** ms until every credential's own revocation event was on the feed (the fan-out). */
  fanout: { p50: number; p99: number; max: number; samples: number[] };
  /** Seconds to fill one task through the API (untimed setup), and failed issuances. */
  populateSeconds: number;
  populateFailed: number;
}

export interface PropagationResult {
  sizes: PropagationSize[];
}

const pct = (samples: number[]) => ({
  p50: round(percentile(samples, 50), 1),
  p99: round(percentile(samples, 99), 1),
  max: round(Math.max(...samples), 1),
  samples: samples.map((s) => round(s, 1)),
});

async function introspectUntilInactive(ctx: BenchContext, token: string, timeoutMs: number): Promise<number> {
  const start = performance.now();
  for (;;) {
    const res = await ctx.http.request('POST', '/v1/introspect', {
      body: { token },
      headers: { authorization: `Bearer ${ctx.adminToken}` },
    });
    if (res.status !== 200) throw new Error(`introspection: ${res.status} ${res.text.slice(0, 200)}`);
    if (res.json.active === false) return performance.now();
    if (performance.now() - start > timeoutMs) throw new Error('introspection still active');
  }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function oneRepeat(
  ctx: BenchContext,
  rp: RelyingParty,
  size: number,
  repeat: number,
): Promise<{
  introspection: number;
  sdk: number;
  sdkSinceRequest: number;
  complete: number;
  fanout: number;
  populate: number;
  failed: number;
}> {
  const task = `bench-prop-${size}-${repeat}-${randomBytes(4).toString('hex')}`;
  // The completing credential: aud includes the broker, so it may end its own task.
  const owner = await issueOne(ctx, { task, audience: [AUDIENCE, ctx.broker.issuer] });
  const populated = await issueMany(ctx, size - 1, () => task);
  const svid = await rp.verifier.verify(owner.token);
  if (svid.task !== task) throw new Error('verify returned another task');
  const watch = rp.watch(task);
  try {
    const sent = performance.now();
    const res = await ctx.http.request('POST', `/v1/tasks/${encodeURIComponent(task)}/complete`, {
      headers: { authorization: `Bearer ${owner.token}` },
    });
    const t0 = performance.now();
    if (res.status !== 202) throw new Error(`completing the task: ${res.status} ${res.text.slice(0, 200)}`);
    const inactiveAt = await introspectUntilInactive(ctx, owner.token, 10_000);
    await within(watch.taskEvent, 10_000, 'task revocation event');
    const sdk = Math.max(0, watch.taskEventAt! - t0);
    try {
      await rp.verifier.verify(owner.token);
      throw new Error('the SDK still accepts a token of the completed task');
    } catch (e) {
      if (!isVerifyError(e) || e.code !== 'ERR_TOKEN_REVOKED') throw e;
    }
    const expected = populated.ok + 1;
    await within(watch.credentials(expected), 120_000, `fan-out of ${expected} credential events`);
    const fanout = Math.max(0, (watch.lastCredentialEventAt ?? t0) - t0);
    return {
      introspection: inactiveAt - t0,
      sdk,
      sdkSinceRequest: watch.taskEventAt! - sent,
      complete: t0 - sent,
      fanout,
      populate: populated.seconds,
      failed: populated.failed,
    };
  } finally {
    rp.unwatch(task);
  }
}

export async function runPropagation(ctx: BenchContext, rp: RelyingParty): Promise<PropagationResult> {
  const plan: Array<[number, number]> = ctx.quick
    ? [
        [1, 5],
        [100, 3],
        [10_000, 1],
      ]
    : [
        [1, 25],
        [100, 15],
        [10_000, 3],
      ];
  const sizes: PropagationSize[] = [];
  for (const [size, repeats] of plan) {
    const rows: Awaited<ReturnType<typeof oneRepeat>>[] = [];
    for (let i = 0; i < repeats; i++) rows.push(await oneRepeat(ctx, rp, size, i));
    const s: PropagationSize = {
      credentials: size,
      repeats,
      introspection: pct(rows.map((r) => r.introspection)),
      sdk: pct(rows.map((r) => r.sdk)),
      sdkSinceRequest: pct(rows.map((r) => r.sdkSinceRequest)),
      completeResponse: pct(rows.map((r) => r.complete)),
      fanout: pct(rows.map((r) => r.fanout)),
      populateSeconds: round(Math.max(...rows.map((r) => r.populate)), 1),
      populateFailed: rows.reduce((n, r) => n + r.failed, 0),
    };
    ctx.log(
      `  propagation ${size} credentials x${repeats}: introspection p99 ${s.introspection.p99} ms, ` +
        `sdk p99 ${s.sdk.p99} ms (${s.sdkSinceRequest.p99} ms since the request was sent), ` +
        `fan-out p99 ${s.fanout.p99} ms`,
    );
    sizes.push(s);
  }
  return { sizes };
}
