// Scenario 3: a relying party's verification cost. The SDK's verify (JWKS key, claims, SPIFFE checks, revocation
// lookup against a feed holding many revoked entries) against plain jose jwtVerify of the same token with the
// same key, in-process, in interleaved rounds.
import { performance } from 'node:perf_hooks';
import { importJWK, type JWK, jwtVerify } from 'jose';
import type { BenchContext } from '../lib/context.ts';
import { issueMany, issueOne } from '../lib/issue.ts';
import type { RelyingParty } from '../lib/relying-party.ts';
import { pairedRatio, type Summary, summarize } from '../lib/stats.ts';
import { AUDIENCE } from '../lib/workload.ts';

export interface VerifyResult {
  iterations: number;
  rounds: number;
  revokedCredentialsLoaded: number;
  endedTasksLoaded: number;
  sdkOpsPerSec: Summary;
  joseOpsPerSec: Summary;
  /** sdk / jose, per round. */
  ratio: Summary;
}

async function timeOps(n: number, op: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i++) await op();
  return (n * 1000) / (performance.now() - start);
}

/** Makes sure the relying party holds at least `min` revoked credentials: fills a task and completes it. */
async function loadRevocations(ctx: BenchContext, rp: RelyingParty, min: number): Promise<void> {
  const have = rp.verifier.status().feed?.revokedCredentials ?? 0;
  if (have >= min) return;
  const task = `bench-verify-${Date.now()}`;
  const owner = await issueOne(ctx, { task, audience: [AUDIENCE, ctx.broker.issuer] });
  const watch = rp.watch(task);
  await issueMany(ctx, min - have, () => task);
  const res = await ctx.http.request('POST', `/v1/tasks/${task}/complete`, {
    headers: { authorization: `Bearer ${owner.token}` },
  });
  if (res.status !== 202) throw new Error(`completing ${task}: ${res.status} ${res.text.slice(0, 200)}`);
  await watch.credentials(min - have);
  rp.unwatch(task);
}

export async function runVerify(ctx: BenchContext, rp: RelyingParty): Promise<VerifyResult> {
  await loadRevocations(ctx, rp, 1000);
  const { token } = await issueOne(ctx);
  const jwks = (await ctx.http.request('GET', '/.well-known/jwks.json')).json as { keys: JWK[] };
  const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error('the token kid is not in the JWKS');
  const key = await importJWK(jwk, 'ES256');
  const issuer = ctx.broker.issuer;
  const sdk = () => rp.verifier.verify(token);
  const plain = () => jwtVerify(token, key, { issuer, audience: AUDIENCE, algorithms: ['ES256'] });
  await sdk();
  await plain();

  // Many short interleaved blocks: the machine's noise comes in bursts, and a burst then hits a pair of
  // blocks rather than one side's whole measurement.
  const iterations = ctx.quick ? 400 : 1_000;
  const rounds = ctx.quick ? 16 : 40;
  // Warm both paths up (JIT) before measuring.
  await timeOps(iterations / 2, sdk);
  await timeOps(iterations / 2, plain);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      a.push(await timeOps(iterations, sdk));
      b.push(await timeOps(iterations, plain));
    } else {
      b.push(await timeOps(iterations, plain));
      a.push(await timeOps(iterations, sdk));
    }
  }
  const status = rp.verifier.status().feed;
  return {
    iterations,
    rounds,
    revokedCredentialsLoaded: status?.revokedCredentials ?? 0,
    endedTasksLoaded: status?.endedTasks ?? 0,
    sdkOpsPerSec: summarize(a),
    joseOpsPerSec: summarize(b),
    ratio: pairedRatio(a, b),
  };
}
