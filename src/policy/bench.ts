// Microbenchmark of one policy decision with 10, 100 and 1,000 policies: `npx tsx src/policy/bench.ts [--quick]`.
// Compares the engine (pre-parsed set, no schema at evaluation, only the attributes policies read) with
// cedar-wasm's other ways in: pre-parsed set and schema with the full request validated, and isAuthorized
// parsing the policies and schema on every call.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { isAuthorized, preparsePolicySet, preparseSchema, statefulIsAuthorized } from './cedar.ts';
import { PolicyEngine } from './engine.ts';
import { buildCedarRequest, type DecisionRequest } from './request.ts';

const COUNTS = [10, 100, 1000] as const;
const SPIFFE_ID = 'spiffe://writ.local/ci/deploy';
const AUDIENCE = 'https://deploy.acme.example';
const ALL_ATTRIBUTES = new Set([
  ...['spiffe_id', 'trust_domain', 'attestor', 'selectors', 'legacy', 'task', 'posture'],
  ...['source_ip', 'now', 'hour_utc', 'weekday', 'ttl', 'credential_type', 'extra'],
]);

/** One policy that grants the benchmark request; the rest look like real ones and do not apply to it. */
export function generatePolicies(n: number): string {
  const out = [
    `@id("grant-bench")\n@max_ttl("600")\npermit (principal is Writ::Workload, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"${AUDIENCE}")\n` +
      'when { principal.selectors.contains("github_actions:ref:refs/heads/main") && ' +
      'context.source_ip.isInRange(ip("192.0.2.0/24")) && context.hour_utc >= 8 && context.hour_utc < 18 };',
  ];
  for (let i = 1; i < n; i++) {
    if (i % 3 === 0) {
      out.push(
        `@id("svc-${i}")\npermit (principal == Writ::Workload::"spiffe://writ.local/svc/${i}", action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://api.example/${i}");`,
      );
    } else if (i % 3 === 1) {
      out.push(
        `@id("k8s-${i}")\npermit (principal, action in Writ::Action::"issue", resource)\n` +
          `when { principal.selectors.contains("k8s_psat:namespace:ns${i}") && context.ttl <= 900 && context.weekday != 0 };`,
      );
    } else {
      out.push(
        `@id("fence-${i}")\nforbid (principal, action, resource)\n` +
          `when { principal.legacy && context.ttl > ${3600 + i} && context.source_ip.isInRange(ip("10.${i % 256}.0.0/16")) };`,
      );
    }
  }
  return `${out.join('\n\n')}\n`;
}

export const BENCH_REQUEST: DecisionRequest = {
  principal: {
    spiffeId: SPIFFE_ID,
    trustDomain: 'writ.local',
    attestor: 'github_actions',
    selectors: ['github_actions:repository:acme/payments', 'github_actions:ref:refs/heads/main'],
    legacy: false,
    task: 'github:acme/payments/1234/1',
    posture: {},
  },
  action: 'issue_jwt',
  resource: { type: 'Audience', id: AUDIENCE },
  context: { sourceIp: '192.0.2.10', now: 1_767_261_600, ttl: 300, credentialType: 'jwt', legacy: false },
};

function usPerCall(iterations: number, fn: () => unknown): number {
  const start = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return ((performance.now() - start) * 1000) / iterations;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const rounds = quick ? 3 : 5;
  const dir = await mkdtemp(join(tmpdir(), 'writ-policy-bench-'));
  const rows: string[][] = [['policies', 'load ms', 'engine µs', 'stateful+schema µs', 'isAuthorized µs']];
  try {
    for (const n of COUNTS) {
      await rm(join(dir, 'generated.cedar'), { force: true });
      await writeFile(join(dir, 'generated.cedar'), generatePolicies(n));
      const loadStart = performance.now();
      // Without the decision cache, which would answer this one request from memory: an evaluation is measured.
      const engine = await PolicyEngine.load({ dir, decisionCache: 0 });
      const loadMs = performance.now() - loadStart;
      const set = engine.policySet;
      const check = engine.decide(BENCH_REQUEST);
      if (check.decision !== 'allow' || check.reasons.join() !== 'grant-bench') {
        throw new Error(`unexpected decision: ${JSON.stringify(check)}`);
      }

      const full = buildCedarRequest(
        { ...set, attributesRead: ALL_ATTRIBUTES, namesActionGroups: true },
        BENCH_REQUEST,
      );
      if (typeof full === 'string') throw new Error(full);
      const schemaName = `writ-bench-schema-${n}`;
      if (preparseSchema(schemaName, set.schema).type !== 'success') throw new Error('schema refused');
      // The engine's own pre-parsed set is private to it: pre-parse the same text again for the others.
      const setId = `writ-bench-set-${n}`;
      if (preparsePolicySet(setId, { staticPolicies: { ...set.staticPolicies } }).type !== 'success') {
        throw new Error('policy set refused');
      }
      const stateful = () =>
        statefulIsAuthorized({
          ...full,
          preparsedPolicySetId: setId,
          preparsedSchemaName: schemaName,
          validateRequest: true,
        });
      const stateless = () =>
        isAuthorized({
          ...full,
          policies: { staticPolicies: { ...set.staticPolicies } },
          schema: set.schema,
          validateRequest: true,
        });
      const answer = stateful();
      if (answer.type !== 'success' || answer.response.decision !== 'allow')
        throw new Error('stateful disagrees');

      const iterations = quick ? Math.ceil(20_000 / n) + 200 : Math.ceil(100_000 / n) + 1000;
      const slowIterations = Math.max(5, Math.ceil(iterations / 50));
      const engineUs: number[] = [];
      const statefulUs: number[] = [];
      const statelessUs: number[] = [];
      usPerCall(Math.ceil(iterations / 4), () => engine.decide(BENCH_REQUEST));
      usPerCall(Math.ceil(iterations / 4), stateful);
      for (let r = 0; r < rounds; r++) {
        engineUs.push(usPerCall(iterations, () => engine.decide(BENCH_REQUEST)));
        statefulUs.push(usPerCall(iterations, stateful));
        statelessUs.push(usPerCall(slowIterations, stateless));
      }
      rows.push([
        String(n),
        loadMs.toFixed(0),
        median(engineUs).toFixed(1),
        median(statefulUs).toFixed(1),
        median(statelessUs).toFixed(0),
      ]);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const [load1] = loadavg();
  process.stdout.write(
    `node ${process.version}, ${availableParallelism()} CPUs, load ${load1?.toFixed(1)}; median of ${rounds} rounds\n`,
  );
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) process.stdout.write(`${row.map((c, i) => c.padStart(widths[i]!)).join('  ')}\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
