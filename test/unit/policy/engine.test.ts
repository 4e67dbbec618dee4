import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_DIR, PolicyEngine } from '../../../src/policy/index.ts';
import { policyDir, request, tuesdayAt } from './fixtures.ts';

const ISSUE = 'action in Writ::Action::"issue"';

async function engineWith(files: Record<string, string>): Promise<PolicyEngine> {
  return PolicyEngine.load({ dir: await policyDir(files) });
}

describe('deny by default', () => {
  it('denies everything with an empty policy directory, naming no policy', async () => {
    const engine = await engineWith({});
    expect(engine.policySet.policies).toEqual([]);
    expect(engine.decide(request())).toEqual({
      decision: 'deny',
      reasons: [],
      errors: [],
      approvalRequired: false,
      approvalPolicies: [],
    });
    expect(
      engine.decide(request({ action: 'issue_x509', context: { credentialType: 'x509' } })).decision,
    ).toBe('deny');
  });

  it('denies when no permit matches, even if other permits exist', async () => {
    const engine = await engineWith({
      'a.cedar': `@id("other-audience") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://other.example");`,
    });
    expect(engine.decide(request())).toMatchObject({ decision: 'deny', reasons: [], errors: [] });
  });
});

describe('the shipped default policy', () => {
  it('allows JWT and X.509 issuance for any workload and audience, by default-issue', async () => {
    const engine = await PolicyEngine.load({ dir: DEFAULT_POLICY_DIR });
    expect(engine.policySet.policies.map((p) => p.id)).toEqual(['default-issue']);
    expect(engine.decide(request())).toEqual({
      decision: 'allow',
      reasons: ['default-issue'],
      errors: [],
      approvalRequired: false,
      approvalPolicies: [],
    });
    const x509 = request({
      action: 'issue_x509',
      principal: { attestor: 'static_key', legacy: true },
      context: { credentialType: 'x509', sourceIp: '203.0.113.9', now: tuesdayAt(3), ttl: 3600 },
    });
    expect(engine.decide(x509)).toMatchObject({ decision: 'allow', reasons: ['default-issue'] });
    expect(engine.decide(request()).ttlCap).toBeUndefined();
  });

  it('permits no relying-party action at /v1/authorize', async () => {
    const engine = await PolicyEngine.load({ dir: DEFAULT_POLICY_DIR });
    expect(engine.hasAction('read')).toBe(false);
    const d = engine.decide(request({ action: 'read', resource: { type: 'Resource', id: 'ledger' } }));
    expect(d).toMatchObject({ decision: 'deny', reasons: [] });
    expect(d.errors).toEqual(['request: unknown action "read"']);
  });
});

describe('a CIDR and time-window policy', () => {
  const files = {
    'window.cedar': `
      // Local callers, office hours only.
      @id("local-office-hours")
      permit (principal is Writ::Workload, ${ISSUE}, resource)
      when {
        context.source_ip.isInRange(ip("127.0.0.0/8")) &&
        context.hour_utc >= 8 && context.hour_utc < 18
      };`,
  };

  it('allows from 127.0.0.1 at 10:00 UTC', async () => {
    const engine = await engineWith(files);
    expect(engine.decide(request())).toMatchObject({ decision: 'allow', reasons: ['local-office-hours'] });
  });

  it('denies the same request from 10.1.2.3', async () => {
    const engine = await engineWith(files);
    expect(engine.decide(request({ context: { sourceIp: '10.1.2.3' } }))).toMatchObject({
      decision: 'deny',
      reasons: [],
    });
  });

  it('denies the same request at 23:00 UTC', async () => {
    const engine = await engineWith(files);
    expect(engine.decide(request({ context: { now: tuesdayAt(23) } }))).toMatchObject({ decision: 'deny' });
    expect(engine.decide(request({ context: { now: tuesdayAt(17) + 3599 } })).decision).toBe('allow');
    expect(engine.decide(request({ context: { now: tuesdayAt(18) } })).decision).toBe('deny');
  });

  it('reads an IPv4-mapped IPv6 source (a dual-stack socket) as the IPv4 address', async () => {
    const engine = await engineWith(files);
    expect(engine.decide(request({ context: { sourceIp: '::ffff:127.0.0.1' } })).decision).toBe('allow');
    expect(engine.decide(request({ context: { sourceIp: '::ffff:10.1.2.3' } })).decision).toBe('deny');
  });

  it('derives the weekday from now: 0 is Sunday', async () => {
    const engine = await engineWith({
      'weekend.cedar': `@id("weekends") permit (principal, ${ISSUE}, resource) when { context.weekday == 0 || context.weekday == 6 };`,
    });
    expect(engine.decide(request()).decision).toBe('deny'); // Tuesday
    expect(engine.decide(request({ context: { now: Date.UTC(2026, 0, 4, 12) / 1000 } })).decision).toBe(
      'allow',
    );
    expect(engine.decide(request({ context: { now: Date.UTC(2026, 0, 10, 12) / 1000 } })).decision).toBe(
      'allow',
    );
  });
});

describe('decisions and their reasons', () => {
  it('lets a forbid win over a permit, naming only the forbid', async () => {
    const engine = await engineWith({
      'a.cedar': `@id("allow-all") permit (principal, ${ISSUE}, resource);`,
      'b.cedar': `@id("no-legacy") forbid (principal, ${ISSUE}, resource) when { principal.legacy };`,
    });
    expect(engine.decide(request()).reasons).toEqual(['allow-all']);
    expect(engine.decide(request({ principal: { legacy: true } }))).toEqual({
      decision: 'deny',
      reasons: ['no-legacy'],
      errors: [],
      approvalRequired: false,
      approvalPolicies: [],
    });
  });

  it('lists every determining policy by id and never any policy text', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("by-selector") permit (principal, ${ISSUE}, resource)
          when { principal.selectors.contains("join_token:spiffe_id:spiffe://writ.local/ci/deploy") };
        @id("by-audience") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://api.example");
        @id("not-this-one") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://other.example");`,
    });
    const d = engine.decide(request());
    expect(d.decision).toBe('allow');
    expect([...d.reasons].sort()).toEqual(['by-audience', 'by-selector']);
    expect(JSON.stringify(d)).not.toMatch(/permit|principal|selectors|contains/);
  });

  it('caps the TTL at the smallest @max_ttl among the determining permits', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("ten-minutes") @max_ttl("600") permit (principal, ${ISSUE}, resource);
        @id("five-minutes") @max_ttl("300") permit (principal, ${ISSUE}, resource) when { context.legacy };
        @id("uncapped") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://api.example");`,
    });
    expect(engine.decide(request())).toMatchObject({ decision: 'allow', ttlCap: 600 });
    expect(engine.decide(request({ context: { legacy: true } }))).toMatchObject({ ttlCap: 300 });
    const other = request({ resource: { type: 'Audience', id: 'https://other.example' } });
    expect(engine.decide(other)).toMatchObject({ reasons: ['ten-minutes'], ttlCap: 600 });
  });

  it('caps by context instead when a policy compares context.ttl (denied above the cap)', async () => {
    const engine = await engineWith({
      'a.cedar': `@id("short-only") permit (principal, ${ISSUE}, resource) when { context.ttl <= 300 };`,
    });
    expect(engine.decide(request({ context: { ttl: 300 } })).decision).toBe('allow');
    expect(engine.decide(request({ context: { ttl: 301 } })).decision).toBe('deny');
  });

  it('flags approval when a determining permit is annotated @approval("required")', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("routine") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://api.example");
        @id("sensitive") @approval("required")
        permit (principal, ${ISSUE}, resource == Writ::Audience::"https://vault.example");`,
    });
    expect(engine.decide(request())).toMatchObject({ approvalRequired: false, approvalPolicies: [] });
    const d = engine.decide(request({ resource: { type: 'Audience', id: 'https://vault.example' } }));
    expect(d).toMatchObject({ decision: 'allow', approvalRequired: true, approvalPolicies: ['sensitive'] });
  });

  it('fails closed when a policy errs: an erring forbid cannot let a permit through', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("allow-all") permit (principal, ${ISSUE}, resource);
        @id("overflowing-fence") forbid (principal, ${ISSUE}, resource) when { context.now * 1000000000000 < 0 };`,
    });
    const d = engine.decide(request());
    expect(d).toMatchObject({ decision: 'deny', reasons: ['overflowing-fence'], approvalRequired: false });
    expect(d.errors).toHaveLength(1);
    expect(d.errors[0]).toMatch(/^overflowing-fence: integer overflow/);
  });

  it('denies, with an error, a request it cannot evaluate', async () => {
    const engine = await engineWith({ 'a.cedar': `@id("allow-all") permit (principal, action, resource);` });
    const cases: [Parameters<typeof request>[0], RegExp][] = [
      [{ context: { sourceIp: 'not-an-ip' } }, /sourceIp is not an IP address/],
      [{ context: { sourceIp: '10.0.0.0/8' } }, /sourceIp is not an IP address/],
      [{ context: { now: 1.5 } }, /now must be whole epoch seconds/],
      [{ context: { ttl: -1 } }, /ttl must be a whole number/],
      [{ action: 'nope' }, /unknown action "nope"/],
      [{ action: 'issue' }, /unknown action "issue"/], // a group, not something to ask for
      [{ resource: { type: 'Resource', id: 'x' } }, /does not apply to Writ::Resource/],
      [{ context: { extra: { 'a=b': 'c' } } }, /context.extra key/],
      [{ context: { extra: { nested: {} as unknown as string } } }, /context.extra.nested must be/],
      [{ principal: { posture: { big: 'x'.repeat(2000) } } }, /principal.posture.big must be/],
    ];
    for (const [overrides, error] of cases) {
      const d = engine.decide(request(overrides));
      expect(d.decision).toBe('deny');
      expect(d.reasons).toEqual([]);
      expect(d.errors.join()).toMatch(error);
    }
  });

  it('gives policies posture facts and caller facts as key=value sets', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("patched") permit (principal, ${ISSUE}, resource)
          when { principal.posture.contains("patched=true") && principal.posture.contains("os=linux") };`,
    });
    expect(engine.decide(request()).decision).toBe('deny');
    expect(engine.decide(request({ principal: { posture: { patched: true, os: 'linux' } } })).decision).toBe(
      'allow',
    );
  });

  it("decides a relying party's own action declared in the policy directory's schema", async () => {
    const engine = await engineWith({
      'actions.cedarschema':
        'action deploy appliesTo { principal: Workload, resource: Resource, context: RequestContext };',
      'a.cedar': `
        @id("deploy-prod") permit (principal, action == Writ::Action::"deploy", resource == Writ::Resource::"prod")
          when { context.extra.contains("change=approved") && context.extra.contains("window=1") };`,
    });
    expect(engine.hasAction('deploy')).toBe(true);
    const deploy = (extra: Record<string, string | number | boolean>) =>
      engine.decide(
        request({ action: 'deploy', resource: { type: 'Resource', id: 'prod' }, context: { extra } }),
      );
    expect(deploy({ change: 'approved', window: 1 })).toMatchObject({
      decision: 'allow',
      reasons: ['deploy-prod'],
    });
    expect(deploy({ change: 'pending', window: 1 })).toMatchObject({ decision: 'deny', reasons: [] });
    // An issuance cannot be decided as the relying party's action, nor the other way round.
    expect(engine.decide(request({ action: 'deploy' })).errors.join()).toMatch(
      /does not apply to Writ::Audience/,
    );
    expect(engine.decide(request()).decision).toBe('deny');
  });

  it('decides several audiences at once: allowed only when every one is', async () => {
    const engine = await engineWith({
      'a.cedar': `
        @id("api") @max_ttl("900") permit (principal, ${ISSUE}, resource == Writ::Audience::"https://api.example");
        @id("db") @max_ttl("300") @approval("required")
        permit (principal, ${ISSUE}, resource == Writ::Audience::"https://db.example");`,
    });
    const aud = (id: string) => request({ resource: { type: 'Audience', id } });
    expect(engine.decideAll([aud('https://api.example'), aud('https://db.example')])).toEqual({
      decision: 'allow',
      reasons: ['api', 'db'],
      errors: [],
      ttlCap: 300,
      approvalRequired: true,
      approvalPolicies: ['db'],
    });
    expect(engine.decideAll([aud('https://api.example'), aud('https://else.example')])).toMatchObject({
      decision: 'deny',
      reasons: [],
      approvalRequired: false,
    });
    expect(() => engine.decideAll([])).toThrow(TypeError);
  });

  it('leaves out of the Cedar request every attribute no policy reads', async () => {
    const engine = await engineWith({
      'a.cedar': `@id("a") permit (principal, ${ISSUE}, resource) when { context.hour_utc < 12 && principal has task };`,
    });
    expect([...engine.policySet.attributesRead].sort()).toEqual(['hour_utc', 'task']);
    expect(engine.decide(request()).decision).toBe('allow');
  });
});
