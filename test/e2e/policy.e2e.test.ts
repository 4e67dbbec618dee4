// Request-time policy over HTTP: source network, time, legacy caps, approvals with MFA, and /v1/authorize
// flipping to deny after a revocation or a policy change.
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuthorizer, createVerifier, requireSvid } from '../../src/verify/index.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const LEGACY_KEY = 'legacy-shared-secret-0123456789';
const sha256hex = async (v: string) =>
  (await import('node:crypto')).createHash('sha256').update(v).digest('hex');

const POLICIES = `
@id("office-hours-from-loopback")
permit (principal is Writ::Workload, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://api.example")
when { context.source_ip.isInRange(ip("127.0.0.0/8")) && context.hour_utc >= 8 && context.hour_utc < 18 };

@id("legacy-capped")
@max_ttl("120")
permit (principal is Writ::Workload, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://legacy.example")
when { context.legacy };

@id("sensitive-needs-approval")
@approval("required")
permit (principal is Writ::Workload, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://vault.example");

@id("readers")
permit (principal is Writ::Workload, action == Writ::Action::"read", resource == Writ::Resource::"reports");
`;
const ACTIONS =
  'action read, write appliesTo { principal: Workload, resource: Resource, context: RequestContext };\n';

function at(hourUtc: number): number {
  const d = new Date();
  d.setUTCHours(hourUtc, 0, 0, 0);
  return d.getTime();
}

describe('request-time policy', () => {
  let b: TestBroker;
  let dir: string;
  const clock = new FakeClock(at(10));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-policy-'));
    writeFileSync(join(dir, 'rules.cedar'), POLICIES);
    writeFileSync(join(dir, 'actions.cedarschema'), ACTIONS);
    b = await startTestBroker({
      clock: clock.clock,
      config: {
        trustDomain: TD,
        policy: { dir },
        // The test sends X-Forwarded-For from loopback: trust loopback proxies for the source address.
        server: { trustProxy: 'loopback' },
        attestors: { static_key: { keys: [{ id: 'billing', sha256: await sha256hex(LEGACY_KEY) }] } },
      } as never,
    });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/legacy/billing`,
      selectors: ['static_key:id:billing'],
    });
    expect(entry.status).toBe(201);
  });
  afterAll(async () => {
    await b?.close();
  });

  const jwt = async (
    audience: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) => {
    const jt = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/ci` })).body.token;
    return b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: [audience], ...extra },
      headers,
    });
  };

  it('allows from the permitted network in the time window, and denies otherwise naming the policy', async () => {
    clock.set(at(10));
    expect((await jwt('https://api.example')).status).toBe(200);
    const elsewhere = await jwt('https://api.example', {}, { 'x-forwarded-for': '10.1.2.3' });
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body.error).toBe('access_denied');
    expect(elsewhere.body.policies).toEqual([]);
    expect(elsewhere.text).not.toContain('isInRange');
    clock.set(at(23));
    const late = await jwt('https://api.example');
    expect(late.status).toBe(403);
    expect(late.body.error).toBe('access_denied');
    clock.set(at(10));
    // An audience no policy names is denied by default.
    expect((await jwt('https://other.example')).status).toBe(403);
  });

  it('caps a legacy static_key workload by policy', async () => {
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: {
        attestor: 'static_key',
        evidence: { key: LEGACY_KEY },
        audience: ['https://legacy.example'],
        ttl: 3600,
      },
    });
    expect(res.status).toBe(200);
    const claims = JSON.parse(Buffer.from(res.body.token.split('.')[1], 'base64url').toString());
    expect(claims.exp - claims.iat).toBe(120);
    const view = (await b.admin('GET', `/v1/admin/credentials/${res.body.id}`)).body;
    expect(view.legacy).toBe(true);
  });

  it('waits for an admin approval given with a TOTP code, then issues once', async () => {
    const admin = await b.admin('POST', '/v1/admin/accounts', { name: 'carol' });
    const token = admin.body.token as string;
    const secret = new URL(admin.body.otpauthUri).searchParams.get('secret')!;
    const first = await jwt('https://vault.example');
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ status: 'pending', policies: ['sensitive-needs-approval'] });
    const approval = first.body.approval as string;
    expect(approval).toMatch(/^apr_/);
    expect(first.body.token).toBeUndefined();

    expect((await jwt('https://vault.example', { approval })).status).toBe(202);
    const noOtp = await b.request('POST', `/v1/admin/approvals/${approval}/approve`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(noOtp.status).toBe(401);
    const code = generateSync({ secret, epoch: Math.floor(clock.now() / 1000) });
    const approved = await b.request('POST', `/v1/admin/approvals/${approval}/approve`, {
      headers: { authorization: `Bearer ${token}`, 'x-writ-otp': code },
    });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ status: 'approved', decidedBy: 'carol' });

    const issued = await jwt('https://vault.example', { approval });
    expect(issued.status).toBe(200);
    expect(issued.body.token).toBeDefined();
    const again = await jwt('https://vault.example', { approval });
    expect(again.status).toBe(403);
    expect(again.body.error).toBe('ERR_APPROVAL_INVALID');
    // Another request cannot ride on the approval.
    const other = await jwt('https://vault.example');
    expect(other.status).toBe(202);
    const misuse = await jwt('https://api.example', { approval: other.body.approval });
    expect(misuse.status).toBe(200); // no approval needed there; the approval is simply not used
  });

  it('lets a relying party ask policy per request through the SDK, with a short decision cache', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/reader2`, { audience: ['https://api.example'] });
    const verifier = createVerifier({ issuer: b.url, audience: 'https://api.example', now: clock.clock });
    await verifier.start();
    const authorizer = createAuthorizer({ issuer: b.url, cacheTtlMs: 50 });
    const app = express();
    app.get(
      '/reports',
      requireSvid(verifier, { authorize: { authorizer, action: 'read', resource: 'reports' } }),
      (_q, r) => {
        r.json({ ok: true });
      },
    );
    app.post(
      '/reports',
      requireSvid(verifier, { authorize: { authorizer, action: 'write', resource: 'reports' } }),
      (_q, r) => {
        r.json({ ok: true });
      },
    );
    const server = await new Promise<Server>((resolve) => {
      const srv = app.listen(0, '127.0.0.1', () => resolve(srv));
    });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/reports`;
      const headers = { authorization: `Bearer ${svid.token}` };
      expect((await fetch(url, { headers })).status).toBe(200);
      const denied = await fetch(url, { method: 'POST', headers });
      expect(denied.status).toBe(403);
      expect(await denied.json()).toMatchObject({ error: 'insufficient_scope' });
      // Revoked: the broker's decision flips (after the short cache).
      expect((await b.admin('POST', `/v1/admin/credentials/${svid.id}/revoke`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 60));
      expect([401, 403]).toContain((await fetch(url, { headers })).status);
    } finally {
      verifier.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('decides at use time, and flips to deny after a revocation and after a policy change', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/reader`, { audience: ['https://api.example'] });
    const ask = () =>
      b.request('POST', '/v1/authorize', {
        body: { token: svid.token, action: 'read', resource: 'reports' },
      });
    expect((await ask()).body).toMatchObject({ decision: 'allow', reasons: ['readers'] });
    const write = await b.request('POST', '/v1/authorize', {
      body: { token: svid.token, action: 'write', resource: 'reports' },
    });
    expect(write.body).toMatchObject({ decision: 'deny', reasons: [] });

    // A policy change: the reader policy is gone after a reload.
    writeFileSync(join(dir, 'rules.cedar'), POLICIES.replace(/@id\("readers"\)[\s\S]*$/, ''));
    const reload = await b.admin('POST', '/v1/admin/policy/reload');
    expect(reload.status).toBe(200);
    expect((await ask()).body.decision).toBe('deny');
    writeFileSync(join(dir, 'rules.cedar'), POLICIES);
    expect((await b.admin('POST', '/v1/admin/policy/reload')).status).toBe(200);
    expect((await ask()).body.decision).toBe('allow');

    // A bad policy is refused and the old set stays.
    writeFileSync(join(dir, 'broken.cedar'), '@id("x") permit (principal, action, resource) when { nope };');
    const bad = await b.admin('POST', '/v1/admin/policy/reload');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('ERR_POLICY_INVALID');
    expect(bad.body.error_description).toContain('broken.cedar');
    expect((await ask()).body.decision).toBe('allow');

    // A revocation.
    expect((await b.admin('POST', `/v1/admin/credentials/${svid.id}/revoke`)).status).toBe(200);
    expect((await ask()).body).toEqual({ decision: 'deny', reasons: ['credential_inactive'] });
  });
});
