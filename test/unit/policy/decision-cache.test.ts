// The engine's decision cache: the same answers as without it, never stale after a reload, never shared.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as cedar from '../../../src/policy/cedar.ts';
import { PolicyEngine, type PolicyEngineOptions } from '../../../src/policy/index.ts';
import { policyDir, request, tuesdayAt, writeFiles } from './fixtures.ts';

// Counts the engine's calls into Cedar (the module is the engine's one door to cedar-wasm).
vi.mock('../../../src/policy/cedar.ts', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../../src/policy/cedar.ts')>();
  return { ...original, statefulIsAuthorized: vi.fn(original.statefulIsAuthorized) };
});
const cedarCalls = vi.mocked(cedar.statefulIsAuthorized);

const ISSUE = 'action in Writ::Action::"issue"';

const POLICIES = {
  'a.cedar': `
    @id("office-hours") @max_ttl("600")
    permit (principal, ${ISSUE}, resource)
      when { context.source_ip.isInRange(ip("127.0.0.0/8")) && context.hour_utc >= 8 && context.hour_utc < 18 };
    @id("vault") @approval("required")
    permit (principal, ${ISSUE}, resource == Writ::Audience::"https://vault.example");
    @id("no-legacy-long") forbid (principal, ${ISSUE}, resource) when { principal.legacy && context.ttl > 300 };
    @id("overflowing-fence") forbid (principal, ${ISSUE}, resource)
      when { context.extra.contains("overflow=true") && context.now * 1000000000000 < 0 };`,
};

async function engines(files: Record<string, string>, opts: PolicyEngineOptions = {}) {
  const dir = await policyDir(files);
  return {
    dir,
    cached: await PolicyEngine.load({ dir, ...opts }),
    uncached: await PolicyEngine.load({ dir, decisionCache: 0 }),
  };
}

beforeEach(() => {
  cedarCalls.mockClear();
});

describe('the decision cache', () => {
  it('answers exactly as the engine without it, over requests that differ in what policies read', async () => {
    const { cached, uncached } = await engines(POLICIES);
    const variants = [
      request(),
      request({ context: { now: tuesdayAt(23) } }),
      request({ context: { now: tuesdayAt(10) + 59 } }),
      request({ context: { sourceIp: '10.1.2.3' } }),
      request({ context: { sourceIp: '::ffff:127.0.0.1' } }),
      request({ principal: { legacy: true }, context: { ttl: 301 } }),
      request({ principal: { legacy: true }, context: { ttl: 300 } }),
      request({ resource: { type: 'Audience', id: 'https://vault.example' } }),
      request({ context: { extra: { overflow: true } } }),
      request({ context: { sourceIp: 'not-an-ip' } }),
      request({ action: 'issue_x509', context: { credentialType: 'x509' } }),
      request({ action: 'nope' }),
    ];
    // Twice over, so that the second pass is answered from the cache where it can be.
    for (let pass = 0; pass < 2; pass++) {
      for (const r of variants) expect(cached.decide(r)).toEqual(uncached.decide(r));
    }
    expect(cached.decide(request()).decision).toBe('allow');
    expect(cached.decide(request({ context: { now: tuesdayAt(23) } })).decision).toBe('deny');
    expect(cached.decide(request({ context: { extra: { overflow: true } } })).errors).toHaveLength(1);
  });

  it('calls Cedar once for requests that agree on every attribute a policy reads', async () => {
    // The default-like policy reads nothing: workload, audience and action make the whole request.
    const { cached } = await engines({
      'a.cedar': `@id("all") permit (principal is Writ::Workload, ${ISSUE}, resource is Writ::Audience);`,
    });
    for (let i = 0; i < 5; i++) {
      const d = cached.decide(
        request({ principal: { task: `task-${i}` }, context: { now: tuesdayAt(10) + i } }),
      );
      expect(d).toMatchObject({ decision: 'allow', reasons: ['all'] });
    }
    expect(cedarCalls).toHaveBeenCalledTimes(1);
    // Another audience or workload is another request.
    cached.decide(request({ resource: { type: 'Audience', id: 'https://other.example' } }));
    cached.decide(request({ principal: { spiffeId: 'spiffe://writ.local/other' } }));
    expect(cedarCalls).toHaveBeenCalledTimes(3);
  });

  it('asks Cedar again when a value a policy reads differs (here the task)', async () => {
    const { cached } = await engines({
      'a.cedar': `@id("one-task") permit (principal, ${ISSUE}, resource) when { principal.task == "task-1" };`,
    });
    expect(cached.decide(request()).decision).toBe('allow');
    expect(cached.decide(request({ principal: { task: 'task-2' } })).decision).toBe('deny');
    expect(cached.decide(request()).decision).toBe('allow');
    expect(cedarCalls).toHaveBeenCalledTimes(2);
  });

  it('does not keep a decision whose evaluation erred', async () => {
    const { cached } = await engines(POLICIES);
    const erring = request({ context: { extra: { overflow: true } } });
    expect(cached.decide(erring)).toMatchObject({ decision: 'deny', reasons: ['overflowing-fence'] });
    expect(cached.decide(erring)).toMatchObject({ decision: 'deny', reasons: ['overflowing-fence'] });
    expect(cedarCalls).toHaveBeenCalledTimes(2);
  });

  it('forgets every decision when the policies are reloaded', async () => {
    const { dir, cached } = await engines({
      'a.cedar': `@id("all") permit (principal, ${ISSUE}, resource);`,
    });
    expect(cached.decide(request())).toMatchObject({ decision: 'allow', reasons: ['all'] });
    await writeFiles(dir, { 'b.cedar': `@id("fence") forbid (principal, ${ISSUE}, resource);` });
    await cached.reload();
    expect(cached.decide(request())).toMatchObject({ decision: 'deny', reasons: ['fence'] });
    // And once more back: the slot the first set used is reused, its old answers are not.
    await writeFiles(dir, { 'b.cedar': '' });
    await cached.reload();
    await writeFiles(dir, { 'b.cedar': `@id("fence-2") forbid (principal, ${ISSUE}, resource);` });
    await cached.reload();
    expect(cached.decide(request())).toMatchObject({ decision: 'deny', reasons: ['fence-2'] });
  });

  it('hands every caller arrays of its own', async () => {
    const { cached } = await engines(POLICIES);
    const vault = request({ resource: { type: 'Audience', id: 'https://vault.example' } });
    const first = cached.decide(vault);
    first.reasons.push('tampered');
    first.approvalPolicies.length = 0;
    first.errors.push('tampered');
    expect(cached.decide(vault)).toEqual({
      decision: 'allow',
      reasons: expect.arrayContaining(['vault', 'office-hours']),
      errors: [],
      ttlCap: 600,
      approvalRequired: true,
      approvalPolicies: ['vault'],
    });
    expect(cached.decide(vault).reasons).toHaveLength(2);
  });

  it('stays within its size: the oldest decision goes first', async () => {
    const { cached } = await engines(
      { 'a.cedar': `@id("all") permit (principal, ${ISSUE}, resource);` },
      {
        decisionCache: 2,
      },
    );
    const aud = (n: number) => request({ resource: { type: 'Audience', id: `https://a${n}.example` } });
    cached.decide(aud(1));
    cached.decide(aud(2));
    cached.decide(aud(2));
    expect(cedarCalls).toHaveBeenCalledTimes(2);
    cached.decide(aud(3)); // evicts aud(1)
    cached.decide(aud(2));
    expect(cedarCalls).toHaveBeenCalledTimes(3);
    cached.decide(aud(1));
    expect(cedarCalls).toHaveBeenCalledTimes(4);
  });

  it('keeps no decision at all with decisionCache: 0, nor for a large request', async () => {
    const { cached, uncached } = await engines({
      'a.cedar': `@id("all") permit (principal, action, resource) when { !context.extra.contains("deny=1") };`,
    });
    uncached.decide(request());
    uncached.decide(request());
    expect(cedarCalls).toHaveBeenCalledTimes(2);
    const facts = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, 'v'.repeat(500)]));
    const large = request({ context: { extra: facts } });
    expect(cached.decide(large).decision).toBe('allow');
    expect(cached.decide(large).decision).toBe('allow');
    expect(cedarCalls).toHaveBeenCalledTimes(4);
    expect(() => new PolicyEngine(cached.policySet, { decisionCache: -1 })).toThrow(TypeError);
  });
});
