// Scenario 5: the cost of one policy decision with 10, 100 and 1,000 Cedar policies. The broker's engine
// (src/policy: request building, pre-parsed set, fail-closed answer) against its baseline: cedar-wasm's own
// statefulIsAuthorized on the same pre-parsed policies with the same request. Interleaved rounds, in-process.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { BenchContext } from '../lib/context.ts';
import { type Summary, summarize } from '../lib/stats.ts';
import { AUDIENCE, SPIFFE_ID, TRUST_DOMAIN } from '../lib/workload.ts';

export const POLICY_COUNTS = [10, 100, 1000] as const;

export interface PolicyAtCount {
  policies: number;
  /** µs per decision through src/policy's engine, when this build has one. */
  engineUs: Summary | null;
  /** µs per decision, cedar-wasm statefulIsAuthorized on a pre-parsed set (the baseline). */
  cedarUs: Summary;
  /** engine / cedar, medians. */
  ratio: number | null;
  loadMs: number | null;
}

export interface PolicyResult {
  engine: string | null;
  engineReason: string | null;
  decision: string;
  counts: PolicyAtCount[];
}

/** N policies in Writ's schema: one grants the benchmark workload, the rest look real and do not apply. */
export function policySet(n: number): string {
  const out = [
    `@id("grant-bench")\npermit (principal == Writ::Workload::"${SPIFFE_ID}", action == Writ::Action::"issue_jwt", ` +
      `resource == Writ::Audience::"${AUDIENCE}")\n` +
      'when { principal.selectors.contains("static_key:id:bench") && context.ttl <= 300 && ' +
      'context.source_ip.isInRange(ip("127.0.0.0/8")) };',
  ];
  for (let i = 1; i < n; i++) {
    if (i % 3 === 0) {
      out.push(
        `@id("svc-${i}")\npermit (principal == Writ::Workload::"spiffe://writ.local/svc/${i}", ` +
          `action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://api.example/${i}");`,
      );
    } else if (i % 3 === 1) {
      out.push(
        `@id("k8s-${i}")\npermit (principal, action in Writ::Action::"issue", resource)\n` +
          `when { principal.selectors.contains("k8s_psat:namespace:ns${i}") && context.ttl <= 900 };`,
      );
    } else {
      out.push(
        `@id("fence-${i}")\nforbid (principal, action, resource)\n` +
          `when { principal.legacy && context.ttl > ${3600 + i} && ` +
          `context.source_ip.isInRange(ip("10.${i % 256}.0.0/16")) };`,
      );
    }
  }
  return `${out.join('\n\n')}\n`;
}

const REQUEST = {
  principal: {
    spiffeId: SPIFFE_ID,
    trustDomain: TRUST_DOMAIN,
    attestor: 'static_key',
    selectors: ['static_key:id:bench'],
    legacy: true,
    task: 'task-bench',
    posture: { legacy: true },
  },
  action: 'issue_jwt',
  resource: { type: 'Audience', id: AUDIENCE },
  context: { sourceIp: '127.0.0.1', now: 1_767_261_600, ttl: 300, credentialType: 'jwt', legacy: true },
};

interface EngineLike {
  decide(req: typeof REQUEST): { decision: string; reasons: string[] };
  policySet: { staticPolicies: Record<string, string> };
}
interface EngineClass {
  /** `decisionCache` is ignored by builds without one. */
  load(opts: { dir: string; decisionCache?: number }): Promise<EngineLike>;
}
type BuildRequest = (set: unknown, req: typeof REQUEST) => Record<string, unknown> | string;

/** src/policy's engine and request builder, or why the benchmark cannot drive them. */
async function probeEngine(): Promise<{ engine: EngineClass; build: BuildRequest } | { reason: string }> {
  const dir = path.resolve(import.meta.dirname, '../../../src/policy');
  let index: Record<string, unknown>;
  let request: Record<string, unknown>;
  try {
    index = (await import(path.join(dir, 'index.ts'))) as Record<string, unknown>;
    request = (await import(path.join(dir, 'request.ts'))) as Record<string, unknown>;
  } catch (e) {
    return { reason: `src/policy does not load: ${(e as Error).message.split('\n')[0]}` };
  }
  const engine = index.PolicyEngine as Partial<EngineClass> | undefined;
  const build = request.buildCedarRequest;
  if (typeof engine?.load !== 'function' || typeof build !== 'function') {
    return {
      reason:
        `src/policy exports ${Object.keys(index).join(', ') || 'nothing'}; no PolicyEngine.load/decide and ` +
        'buildCedarRequest to drive (scripts/bench/scenarios/policy.ts)',
    };
  }
  return { engine: engine as EngineClass, build: build as BuildRequest };
}

function usPer(n: number, fn: () => void): number {
  const start = performance.now();
  for (let i = 0; i < n; i++) fn();
  return ((performance.now() - start) * 1000) / n;
}

interface Prepared {
  n: number;
  loadMs: number | null;
  raw: () => void;
  viaEngine: (() => void) | null;
  iterations: number;
}

async function prepare(
  n: number,
  tmp: string,
  probe: Awaited<ReturnType<typeof probeEngine>>,
  budgetUs: number,
  onDecision: (d: string) => void,
): Promise<Prepared> {
  const text = policySet(n);
  let engine: EngineLike | null = null;
  let loadMs: number | null = null;
  let request: Record<string, unknown>;
  let staticPolicies: Record<string, string> | string;
  if (!('reason' in probe)) {
    const dir = path.join(tmp, String(n));
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'bench.cedar'), text);
    const t = performance.now();
    // Without its decision cache: the same request over and over would be answered from it, and this
    // scenario measures an evaluation.
    engine = await probe.engine.load({ dir, decisionCache: 0 });
    loadMs = Math.round(performance.now() - t);
    const d = engine.decide(REQUEST);
    if (d.decision !== 'allow') throw new Error(`engine: ${JSON.stringify(d)}`);
    onDecision(`allow by ${d.reasons.join(', ')}`);
    const built = probe.build(engine.policySet, REQUEST);
    if (typeof built === 'string') throw new Error(`buildCedarRequest: ${built}`);
    request = built;
    staticPolicies = { ...engine.policySet.staticPolicies };
  } else {
    // The same request the engine would build: only the attributes the policies read.
    request = {
      principal: { type: 'Writ::Workload', id: SPIFFE_ID },
      action: { type: 'Writ::Action', id: 'issue_jwt' },
      resource: { type: 'Writ::Audience', id: AUDIENCE },
      context: { ttl: 300, source_ip: { __extn: { fn: 'ip', arg: '127.0.0.1' } } },
      entities: [
        {
          uid: { type: 'Writ::Workload', id: SPIFFE_ID },
          attrs: { selectors: ['static_key:id:bench'], legacy: true },
          parents: [],
        },
      ],
      validateRequest: false,
    };
    staticPolicies = text;
  }
  const setId = `writ-bench-${n}-${Date.now()}`;
  const parsed = cedar.preparsePolicySet(setId, { staticPolicies });
  if (parsed.type !== 'success') throw new Error(`cedar: ${JSON.stringify(parsed.errors[0])}`);
  const call = { ...request, preparsedPolicySetId: setId } as unknown as cedar.StatefulAuthorizationCall;
  const raw = () => {
    const a = cedar.statefulIsAuthorized(call);
    if (a.type !== 'success' || a.response.decision !== 'allow') {
      throw new Error(`cedar: ${JSON.stringify(a).slice(0, 300)}`);
    }
    if (!engine) onDecision(`allow by ${a.response.diagnostics.reason.join(', ')}`);
  };
  const viaEngine = engine
    ? () => {
        if (engine.decide(REQUEST).decision !== 'allow') throw new Error('engine denied');
      }
    : null;
  const once = usPer(20, raw);
  return { n, loadMs, raw, viaEngine, iterations: Math.max(20, Math.round(budgetUs / Math.max(once, 1))) };
}

export async function runPolicy(ctx: BenchContext): Promise<PolicyResult> {
  const probe = await probeEngine();
  if ('reason' in probe) ctx.note(`policy engine: null: ${probe.reason}; reporting raw cedar-wasm only`);
  const rounds = ctx.quick ? 3 : 7;
  // About 0.1 s (quick) or 0.3 s per measurement, whatever the set size.
  const budgetUs = ctx.quick ? 100_000 : 300_000;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'writ-bench-policy-'));
  let decision = '';
  try {
    const sets: Prepared[] = [];
    for (const n of POLICY_COUNTS) {
      sets.push(
        await prepare(n, tmp, probe, budgetUs, (d) => {
          decision = d;
        }),
      );
    }
    // Warm every path up (wasm tiers up while it runs), then interleave sizes and paths round by round.
    for (const s of sets) {
      usPer(s.iterations, s.raw);
      if (s.viaEngine) usPer(s.iterations, s.viaEngine);
    }
    const rawUs = new Map<number, number[]>(sets.map((s) => [s.n, []]));
    const engineUs = new Map<number, number[]>(sets.map((s) => [s.n, []]));
    for (let r = 0; r < rounds; r++) {
      for (const s of sets) {
        const engine = s.viaEngine;
        if (engine && r % 2 === 1) engineUs.get(s.n)!.push(usPer(s.iterations, engine));
        rawUs.get(s.n)!.push(usPer(s.iterations, s.raw));
        if (engine && r % 2 === 0) engineUs.get(s.n)!.push(usPer(s.iterations, engine));
      }
    }
    const counts = sets.map((s): PolicyAtCount => {
      const cedarUs = summarize(rawUs.get(s.n)!);
      const engineSummary = s.viaEngine ? summarize(engineUs.get(s.n)!) : null;
      ctx.log(
        `  ${s.n} policies: engine ${engineSummary ? engineSummary.median.toFixed(1) : 'n/a'} µs, ` +
          `cedar-wasm ${cedarUs.median.toFixed(1)} µs`,
      );
      return {
        policies: s.n,
        engineUs: engineSummary,
        cedarUs,
        ratio: engineSummary ? Math.round((engineSummary.median / cedarUs.median) * 100) / 100 : null,
        loadMs: s.loadMs,
      };
    });
    return {
      engine: 'reason' in probe ? null : 'src/policy PolicyEngine.decide',
      engineReason: 'reason' in probe ? probe.reason : null,
      decision,
      counts,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
