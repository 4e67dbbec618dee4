// Attacks on admin MFA, approvals, request-time policy, /v1/authorize, the audit trail and the SDK's decision
// cache. Tests named "FINDING" show a real problem and fail until it is fixed; the others pin attacks that are
// defeated today.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditRecord } from '../../src/audit/audit-log.ts';
import { WritError } from '../../src/errors.ts';
import { createAuthorizer, createVerifier, requireSvid } from '../../src/verify/index.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const QUARANTINED = `spiffe://${TD}/quarantined`;

const POLICIES = `
@id("api")
permit (principal is Writ::Workload, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://api.example");

@id("blocked-permit")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://blocked.example");
@id("blocked")
forbid (principal, action, resource == Writ::Audience::"https://blocked.example");

@id("capped") @max_ttl("60")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://capped.example");
@id("capped-broad")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://capped.example");

@id("vault") @approval("required")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://vault.example");

@id("corp-only")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://corp.example")
when { context.source_ip.isInRange(ip("10.0.0.0/8")) };

@id("open")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://open.example");
@id("quarantine-subnet")
forbid (principal, action, resource == Writ::Audience::"https://open.example")
when { context.source_ip.isInRange(ip("10.66.0.0/16")) };

@id("overflow-permit")
permit (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://overflow.example");
@id("overflow-forbid")
forbid (principal, action == Writ::Action::"issue_jwt", resource == Writ::Audience::"https://overflow.example")
when { context.now * 9223372036854775807 > 0 };

@id("readers")
permit (principal, action == Writ::Action::"read", resource == Writ::Resource::"reports");
@id("no-quarantined-readers")
forbid (principal, action == Writ::Action::"write", resource)
when { principal.selectors.contains("join_token:spiffe_id:${QUARANTINED}") };

@id("ledger-from-loopback-network")
permit (principal, action == Writ::Action::"read", resource == Writ::Resource::"ledger")
when { context.source_ip.isInRange(ip("127.0.0.0/8")) };

@id("secret-report")
permit (principal, action == Writ::Action::"read", resource == Writ::Resource::"secret-report")
when { context.source_ip.isInRange(ip("10.0.0.0/8")) || context.legacy };
`;
const ACTIONS =
  'action read, write appliesTo { principal: Workload, resource: Resource, context: RequestContext };\n';

interface AdminAccount {
  name: string;
  token: string;
  secret: string;
  /** The last TOTP step used, so that every code is fresh. */
  last: number;
}

async function createAdmin(b: TestBroker, name: string): Promise<AdminAccount> {
  const res = await b.admin('POST', '/v1/admin/accounts', { name });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  const secret = new URL(res.body.otpauthUri as string).searchParams.get('secret');
  if (!secret) throw new Error('no secret in otpauthUri');
  return { name, token: res.body.token as string, secret, last: -1 };
}

/** A fresh code: the oldest step of the ±1 window not used yet; the clock moves on when the window is used up. */
function freshCode(a: AdminAccount, clock: FakeClock): string {
  let current = Math.floor(clock.now() / 30_000);
  const step = Math.max(current - 1, a.last + 1);
  if (step > current + 1) {
    clock.advance((step - current - 1) * 30_000);
    current = step - 1;
  }
  a.last = step;
  return generateSync({ secret: a.secret, epoch: step * 30 });
}

function asAdmin(
  b: TestBroker,
  a: AdminAccount,
  method: string,
  path: string,
  opts: { body?: unknown; otp?: string } = {},
): Promise<TestResponse> {
  return b.request(method, path, {
    ...(opts.body === undefined ? {} : { body: opts.body }),
    headers: {
      authorization: `Bearer ${a.token}`,
      ...(opts.otp === undefined ? {} : { 'x-writ-otp': opts.otp }),
    },
  });
}

async function joinToken(b: TestBroker, spiffeId: string): Promise<string> {
  const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId });
  expect(res.status).toBe(201);
  return res.body.token as string;
}

async function askJwt(
  b: TestBroker,
  spiffeId: string,
  audience: string[],
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<TestResponse> {
  const token = await joinToken(b, spiffeId);
  return b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'join_token', evidence: { token }, audience, ...extra },
    headers,
  });
}

function claims(jwt: string): { exp: number; iat: number } {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString());
}

async function recordsAfter(b: TestBroker, seq: number): Promise<AuditRecord[]> {
  return (await b.broker.deps.audit.page({ after: seq, limit: 1000 })).records;
}

/** Makes the audit trail refuse events of one type while `run` runs (an outage of the audit store). */
async function withAuditFailing<T>(b: TestBroker, type: string, run: () => Promise<T>): Promise<T> {
  const audit = b.broker.deps.audit;
  const original = audit.append;
  audit.append = async (event: AuditEvent) => {
    if (event.type === type) throw new WritError('ERR_STORE_UNAVAILABLE');
    return original.call(audit, event);
  };
  try {
    return await run();
  } finally {
    audit.append = original;
  }
}

describe('admin, approval and policy attacks (memory store)', () => {
  let b: TestBroker;
  let dir: string;
  const clock = new FakeClock();
  let alice: AdminAccount;
  let bob: AdminAccount;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-attacks-policy-'));
    writeFileSync(join(dir, 'rules.cedar'), POLICIES);
    writeFileSync(join(dir, 'actions.cedarschema'), ACTIONS);
    b = await startTestBroker({
      clock: clock.clock,
      config: {
        trustDomain: TD,
        policy: { dir, approvalTtl: 3600 },
        server: { trustProxy: 'loopback' },
      } as never,
    });
    alice = await createAdmin(b, 'alice');
    bob = await createAdmin(b, 'bob');
  });
  afterAll(async () => {
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // ---- MFA on admin routes

  it('refuses every privileged admin route to an account token without a TOTP code', async () => {
    const entryId = '00000000-0000-4000-8000-000000000000';
    const approval = `apr_${'A'.repeat(22)}`;
    const privileged: Array<[string, string, unknown?]> = [
      [
        'POST',
        '/v1/admin/entries',
        { spiffeId: `spiffe://${TD}/evil`, selectors: ['join_token:spiffe_id:x'] },
      ],
      [
        'PUT',
        `/v1/admin/entries/${entryId}`,
        { spiffeId: `spiffe://${TD}/evil`, selectors: ['join_token:x:y'] },
      ],
      ['DELETE', `/v1/admin/entries/${entryId}`],
      ['POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/evil` }],
      ['POST', '/v1/admin/tasks/some-task/revoke', {}],
      ['POST', '/v1/admin/revocations', { spiffeIdPrefix: `spiffe://${TD}/svc` }],
      ['POST', '/v1/admin/accounts', { name: 'mallory' }],
      ['POST', '/v1/admin/accounts/bob/disable'],
      ['POST', '/v1/admin/policy/reload'],
      ['POST', `/v1/admin/approvals/${approval}/approve`],
      ['POST', `/v1/admin/approvals/${approval}/deny`],
    ];
    for (const [method, path, body] of privileged) {
      const res = await asAdmin(b, alice, method, path, body === undefined ? {} : { body });
      expect([method, path, res.status, res.body.error]).toEqual([method, path, 401, 'ERR_OTP_REQUIRED']);
    }
    // Nothing changed: no account, bob still enabled.
    const accounts = (await asAdmin(b, alice, 'GET', '/v1/admin/accounts')).body.accounts as Array<{
      name: string;
      disabled: boolean;
    }>;
    expect(accounts.map((a) => a.name)).not.toContain('mallory');
    expect(accounts.find((a) => a.name === 'bob')?.disabled).toBe(false);
    // Reads need the token only.
    for (const path of [
      '/v1/admin/entries',
      '/v1/admin/credentials',
      '/v1/admin/tasks',
      '/v1/admin/accounts',
      '/v1/admin/policy',
      '/v1/admin/audit',
      '/v1/admin/audit/verify',
    ]) {
      expect([path, (await asAdmin(b, alice, 'GET', path)).status]).toEqual([path, 200]);
    }
  });

  it('fixed: a stolen account token without its second factor revokes every credential, one by one', async () => {
    // Bulk revocation needs a TOTP code; the single-credential route does not, so the list + loop is a
    // bulk revocation without MFA.
    const victims = await Promise.all(
      ['a', 'b', 'c'].map((n) =>
        issueSvid(b, `spiffe://${TD}/victim-${n}`, { audience: ['https://api.example'] }),
      ),
    );
    expect(
      (
        await asAdmin(b, alice, 'POST', '/v1/admin/revocations', {
          body: { spiffeIdPrefix: `spiffe://${TD}/victim-a` },
        })
      ).status,
    ).toBe(401);
    const listed = await asAdmin(b, alice, 'GET', '/v1/admin/credentials?status=active&limit=1000');
    const ids = (listed.body.items as Array<{ id: string }>).map((c) => c.id);
    for (const v of victims) expect(ids).toContain(v.id);
    const statuses: number[] = [];
    for (const v of victims) {
      statuses.push((await asAdmin(b, alice, 'POST', `/v1/admin/credentials/${v.id}/revoke`)).status);
    }
    expect(statuses).toEqual([401, 401, 401]);
  });

  it('accepts a code once, whatever the route it is replayed on', async () => {
    const code = freshCode(alice, clock);
    const used = await asAdmin(b, alice, 'POST', '/v1/admin/join-tokens', {
      body: { spiffeId: `spiffe://${TD}/once` },
      otp: code,
    });
    expect(used.status).toBe(201);
    for (const [method, path, body] of [
      ['POST', '/v1/admin/accounts', { name: 'replayed' }],
      ['POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/once` }],
      ['POST', '/v1/admin/policy/reload', undefined],
    ] as const) {
      const res = await asAdmin(b, alice, method, path, { ...(body ? { body } : {}), otp: code });
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_OTP_INVALID');
    }
  });

  it('refuses odd forms of a code (non-ASCII digits, spaces inside, extra digits, steps outside ±1)', async () => {
    const frank = await createAdmin(b, 'frank');
    const current = Math.floor(clock.now() / 30_000);
    const good = generateSync({ secret: frank.secret, epoch: current * 30 });
    const forms = [
      // Latin-1 superscript digits (a header carries Latin-1): \d must not read them as digits.
      `\u00b9\u00b2\u00b3${good.slice(3)}`,
      `${good.slice(0, 3)} ${good.slice(3)}`,
      `${good}0`,
      generateSync({ secret: frank.secret, epoch: (current - 2) * 30 }),
    ];
    for (const form of forms) {
      const res = await asAdmin(b, frank, 'POST', '/v1/admin/accounts', {
        body: { name: 'frank2' },
        otp: form,
      });
      expect([form, res.status, res.body.error]).toEqual([form, 401, 'ERR_OTP_INVALID']);
    }
    // Four failures, not five: the real code still works, with the whitespace a header may carry.
    const ok = await asAdmin(b, frank, 'POST', '/v1/admin/join-tokens', {
      body: { spiffeId: `spiffe://${TD}/frank` },
      otp: ` ${good} `,
    });
    expect(ok.status).toBe(201);
  });

  it('locks after five failures on any route, refuses the right code while locked, and unlocks after 15 minutes', async () => {
    const gina = await createAdmin(b, 'gina');
    const current = Math.floor(clock.now() / 30_000);
    const good = generateSync({ secret: gina.secret, epoch: current * 30 });
    const bad = good === '000000' ? '111111' : '000000';
    const routes: Array<[string, string, unknown]> = [
      ['POST', '/v1/admin/accounts', { name: 'g1' }],
      ['POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/g` }],
      ['POST', '/v1/admin/policy/reload', undefined],
      ['POST', '/v1/admin/revocations', { spiffeIdPrefix: `spiffe://${TD}/g` }],
      ['POST', '/v1/admin/accounts', { name: 'g2' }],
    ];
    const statuses: number[] = [];
    for (const [method, path, body] of routes) {
      statuses.push((await asAdmin(b, gina, method, path, { ...(body ? { body } : {}), otp: bad })).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401, 423]);
    const locked = await asAdmin(b, gina, 'POST', '/v1/admin/join-tokens', {
      body: { spiffeId: `spiffe://${TD}/g` },
      otp: good,
    });
    expect(locked.status).toBe(423);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    clock.advance(901_000);
    gina.last = current;
    const after = await asAdmin(b, gina, 'POST', '/v1/admin/join-tokens', {
      body: { spiffeId: `spiffe://${TD}/g` },
      otp: freshCode(gina, clock),
    });
    expect(after.status).toBe(201);
  });

  it('audits every break-glass use, and refuses a privileged break-glass action it cannot audit', async () => {
    const head = (await b.broker.deps.audit.head()).seq;
    expect((await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/bg` })).status).toBe(
      201,
    );
    const types = (await recordsAfter(b, head)).map((r) => r.type);
    expect(types).toEqual(
      expect.arrayContaining(['admin.breakglass.used', 'admin.otp.bypassed', 'admin.join_token.created']),
    );
    const refused = await withAuditFailing(b, 'admin.otp.bypassed', () =>
      b.admin('POST', '/v1/admin/accounts', { name: 'ghost' }),
    );
    expect(refused.status).toBe(503);
    const names = ((await b.admin('GET', '/v1/admin/accounts')).body.accounts as Array<{ name: string }>).map(
      (a) => a.name,
    );
    expect(names).not.toContain('ghost');
  });

  it('never shows an account token, its hash or its TOTP secret after creation', async () => {
    const list = await asAdmin(b, alice, 'GET', '/v1/admin/accounts');
    const tokenHash = createHash('sha256').update(alice.token).digest('hex');
    const audit = JSON.stringify((await b.broker.deps.audit.page({ limit: 1000 })).records);
    for (const text of [list.text, audit]) {
      expect(text).not.toContain(alice.token);
      expect(text).not.toContain(tokenHash);
      expect(text).not.toContain(alice.secret);
      expect(text).not.toMatch(/writ_admin_|otpauth:/);
    }
  });

  // ---- approvals

  const vaultUser = `spiffe://${TD}/vault-user`;

  async function pendingApproval(spiffeId = vaultUser, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await askJwt(b, spiffeId, ['https://vault.example'], extra);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.approval as string;
  }

  async function decide(a: AdminAccount, id: string, verdict: 'approve' | 'deny'): Promise<TestResponse> {
    return asAdmin(b, a, 'POST', `/v1/admin/approvals/${id}/${verdict}`, { otp: freshCode(a, clock) });
  }

  it('redeems an approval only for the very request approved, once; an unknown id is refused', async () => {
    const asked = { ttl: 120, task: 'vault-job-1' };
    const id = await pendingApproval(vaultUser, asked);
    expect((await decide(alice, id, 'approve')).status).toBe(200);
    const misuses: Array<[string, string[], Record<string, unknown>]> = [
      ['another identity', ['https://vault.example'], { ...asked }],
      ['another audience set', ['https://vault.example', 'https://api.example'], { ...asked }],
      ['a longer ttl', ['https://vault.example'], { ...asked, ttl: 3600 }],
      ['no ttl', ['https://vault.example'], { task: asked.task }],
      ['another task', ['https://vault.example'], { ...asked, task: 'vault-job-2' }],
    ];
    for (const [what, audience, extra] of misuses) {
      const who = what === 'another identity' ? `spiffe://${TD}/intruder` : vaultUser;
      const res = await askJwt(b, who, audience, { ...extra, approval: id });
      expect([what, res.status, res.body.error]).toEqual([what, 403, 'ERR_APPROVAL_INVALID']);
    }
    const guessed = await askJwt(b, vaultUser, ['https://vault.example'], {
      ...asked,
      approval: `apr_${randomBytes(16).toString('base64url')}`,
    });
    expect(guessed.status).toBe(403);
    expect(guessed.body.error).toBe('ERR_APPROVAL_INVALID');
    // None of that spent the grant: the workload that asked gets its credential, once.
    const issued = await askJwt(b, vaultUser, ['https://vault.example'], { ...asked, approval: id });
    expect(issued.status).toBe(200);
    const c = claims(issued.body.token as string);
    expect(c.exp - c.iat).toBeLessThanOrEqual(120);
    expect(issued.body.task).toBe(asked.task);
    const again = await askJwt(b, vaultUser, ['https://vault.example'], { ...asked, approval: id });
    expect(again.status).toBe(403);
    expect(again.body.error).toBe('ERR_APPROVAL_INVALID');
  });

  it('issues once when two redemptions of one approval race', async () => {
    const id = await pendingApproval();
    expect((await decide(alice, id, 'approve')).status).toBe(200);
    const tokens = await Promise.all([
      joinToken(b, vaultUser),
      joinToken(b, vaultUser),
      joinToken(b, vaultUser),
    ]);
    const results = await Promise.all(
      tokens.map((token) =>
        b.request('POST', '/v1/svid/jwt', {
          body: {
            attestor: 'join_token',
            evidence: { token },
            audience: ['https://vault.example'],
            approval: id,
          },
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 403, 403]);
  });

  it('keeps a denied approval denied, and refuses to decide it again', async () => {
    const id = await pendingApproval();
    expect((await decide(alice, id, 'deny')).status).toBe(200);
    const redeemed = await askJwt(b, vaultUser, ['https://vault.example'], { approval: id });
    expect(redeemed.status).toBe(403);
    expect(redeemed.body.error).toBe('access_denied');
    const flip = await decide(bob, id, 'approve');
    expect(flip.status).toBe(409);
    expect(flip.body.error).toBe('ERR_APPROVAL_DECIDED');
    expect((await askJwt(b, vaultUser, ['https://vault.example'], { approval: id })).status).toBe(403);
  });

  it('neither approves nor redeems an expired approval', async () => {
    const id = await pendingApproval();
    clock.advance(3601_000);
    expect((await decide(alice, id, 'approve')).status).toBe(404);
    const redeemed = await askJwt(b, vaultUser, ['https://vault.example'], { approval: id });
    expect(redeemed.status).toBe(403);
    expect(redeemed.body.error).toBe('ERR_APPROVAL_INVALID');
  });

  it('fixed: two admins deciding one approval at once both succeed, and a deny is silently overridden', async () => {
    // Approvals.decide reads the record, checks "pending", then writes: not atomic. This is the code path of
    // POST /v1/admin/approvals/:id/{approve,deny} after the TOTP check.
    const id = await pendingApproval();
    const outcomes = await Promise.allSettled([
      b.broker.deps.approvals.decide(id, false, 'alice'),
      b.broker.deps.approvals.decide(id, true, 'bob'),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    const record = await b.broker.deps.approvals.get(id);
    const redeemed = await askJwt(b, vaultUser, ['https://vault.example'], { approval: id });
    // Whichever decision won, the record and the grant agree with it.
    expect(redeemed.status).toBe(record?.status === 'approved' ? 200 : 403);
  });

  it('fixed: an approval whose audit record cannot be written still lets the workload in', async () => {
    const id = await pendingApproval();
    const approved = await withAuditFailing(b, 'approval.approved', () => decide(alice, id, 'approve'));
    expect(approved.status).toBe(503); // the admin is told it failed...
    const redeemed = await askJwt(b, vaultUser, ['https://vault.example'], { approval: id });
    // ...so no unaudited approval may be redeemed.
    expect(redeemed.status).not.toBe(200);
  });

  it('fixed: an entry created while the audit trail refuses the record stays in force, unaudited', async () => {
    const spiffeId = `spiffe://${TD}/unaudited-entry`;
    const created = await withAuditFailing(b, 'admin.entry.created', () =>
      asAdmin(b, alice, 'POST', '/v1/admin/entries', {
        body: { spiffeId, selectors: ['join_token:spiffe_id:unaudited'] },
        otp: freshCode(alice, clock),
      }),
    );
    expect(created.status).toBe(503);
    const entries = (await asAdmin(b, alice, 'GET', '/v1/admin/entries')).body.entries as Array<{
      spiffeId: string;
    }>;
    expect(entries.map((e) => e.spiffeId)).not.toContain(spiffeId);
  });

  it('fixed: misusing an approval (replay, another identity) leaves no trace in the audit trail', async () => {
    const id = await pendingApproval();
    expect((await decide(alice, id, 'approve')).status).toBe(200);
    expect((await askJwt(b, vaultUser, ['https://vault.example'], { approval: id })).status).toBe(200);
    const head = (await b.broker.deps.audit.head()).seq;
    const replay = await askJwt(b, vaultUser, ['https://vault.example'], { approval: id });
    expect(replay.status).toBe(403);
    const stolen = await askJwt(b, `spiffe://${TD}/intruder`, ['https://vault.example'], { approval: id });
    expect(stolen.status).toBe(403);
    const denials = (await recordsAfter(b, head)).filter((r) => r.type === 'svid.denied');
    expect(denials.map((r) => r.details?.code)).toEqual(['ERR_APPROVAL_INVALID', 'ERR_APPROVAL_INVALID']);
  });

  // ---- request-time policy at issuance

  it('denies a request for several audiences when one is forbidden, naming only the forbid', async () => {
    const res = await askJwt(b, `spiffe://${TD}/multi`, ['https://api.example', 'https://blocked.example']);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ error: 'access_denied', policies: ['blocked'] });
    expect(res.text).not.toMatch(/forbid|permit|Writ::/);
    expect(res.body.token).toBeUndefined();
  });

  it('does not match an audience spelled differently from the permitted one', async () => {
    for (const audience of [
      'https://api.example/',
      'HTTPS://API.EXAMPLE',
      'https://api.example ',
      'https://api.example\u200b',
      'https://api.example%2F',
    ]) {
      const res = await askJwt(b, `spiffe://${TD}/odd`, [audience]);
      expect([audience, res.status]).toEqual([audience, 403]);
    }
  });

  it('keeps the smallest @max_ttl when a broader permit also applies', async () => {
    const res = await askJwt(b, `spiffe://${TD}/capped`, ['https://capped.example'], { ttl: 3600 });
    expect(res.status).toBe(200);
    const c = claims(res.body.token as string);
    expect(c.exp - c.iat).toBe(60);
  });

  it('fails closed when a forbid errs while evaluating (Cedar alone would skip it and allow)', async () => {
    const res = await askJwt(b, `spiffe://${TD}/overflow`, ['https://overflow.example']);
    expect(res.status).toBe(403);
    expect(res.body.policies).toContain('overflow-forbid');
  });

  it('reads an IPv4-mapped forwarded address as IPv4, and denies a source address that is not one', async () => {
    const spiffeId = `spiffe://${TD}/net`;
    expect((await askJwt(b, spiffeId, ['https://open.example'])).status).toBe(200);
    for (const xff of ['10.66.1.1', '::ffff:10.66.1.1', 'not-an-ip', '10.66.1.1.evil']) {
      const res = await askJwt(b, spiffeId, ['https://open.example'], {}, { 'x-forwarded-for': xff });
      expect([xff, res.status]).toEqual([xff, 403]);
    }
    // A policy that does not read the address denies an unusable one all the same.
    const garbage = await askJwt(
      b,
      spiffeId,
      ['https://api.example'],
      {},
      { 'x-forwarded-for': 'not-an-ip' },
    );
    expect(garbage.status).toBe(403);
    const corp = await askJwt(
      b,
      spiffeId,
      ['https://corp.example'],
      {},
      { 'x-forwarded-for': '::ffff:10.1.2.3' },
    );
    expect(corp.status).toBe(200);
  });

  it('fixed: an IPv4-mapped address in another spelling escapes an IPv4 forbid (behind a trusted proxy)', async () => {
    // ::ffff:a42:101 and 0:0:0:0:0:ffff:10.66.1.1 are 10.66.1.1; only the dotted ::ffff: form is normalised.
    for (const xff of ['::ffff:a42:101', '0:0:0:0:0:ffff:10.66.1.1', '::FFFF:0a42:0101']) {
      const res = await askJwt(
        b,
        `spiffe://${TD}/net2`,
        ['https://open.example'],
        {},
        { 'x-forwarded-for': xff },
      );
      expect([xff, res.status]).toEqual([xff, 403]);
    }
  });

  // ---- audit of denials

  it('fixed: a secret-looking audience keeps a denial out of the audit trail', async () => {
    const head = (await b.broker.deps.audit.head()).seq;
    // A policy denial and a failed attestation, each with one audience the trail refuses to hold.
    const denied = await askJwt(b, `spiffe://${TD}/prober`, [
      'https://blocked.example',
      'eyJhbGciOiJub25lIn0.e30.',
    ]);
    expect(denied.status).toBe(403);
    const guess = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: 'writ_jt_guess' }, audience: ['writ_jt_x'] },
    });
    expect(guess.status).toBe(401);
    const denials = (await recordsAfter(b, head)).filter((r) => r.type === 'svid.denied');
    expect(denials.map((r) => r.details?.code)).toEqual(['access_denied', 'ERR_ATTESTATION_FAILED']);
  });

  it('fixed: a policy denial in the audit trail does not say which workload was denied', async () => {
    const spiffeId = `spiffe://${TD}/who-was-denied`;
    const head = (await b.broker.deps.audit.head()).seq;
    expect((await askJwt(b, spiffeId, ['https://blocked.example'])).status).toBe(403);
    const denial = (await recordsAfter(b, head)).find((r) => r.type === 'svid.denied');
    expect(denial).toBeDefined();
    expect(JSON.stringify(denial)).toContain(spiffeId);
  });

  // ---- /v1/authorize

  const authorize = (token: string, action: string, resource: string, context?: Record<string, unknown>) =>
    b.request('POST', '/v1/authorize', {
      body: { token, action, resource, ...(context ? { context } : {}) },
    });

  it('keeps caller context facts in context.extra: they cannot pose as the source address or legacy', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/ctx`, { audience: ['https://api.example'] });
    for (const context of [
      { source_ip: '10.1.2.3' },
      { legacy: true },
      { 'context.legacy': true, source_ip: '10.0.0.1', spiffe_id: 'x' },
    ]) {
      const res = await authorize(svid.token, 'read', 'secret-report', context);
      expect(res.status).toBe(200);
      expect(res.body.decision).toBe('deny');
    }
  });

  it('does not decide issuance actions at /v1/authorize, nor undeclared ones', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/az`, { audience: ['https://api.example'] });
    for (const action of ['issue_jwt', 'issue_x509', 'issue', 'admin']) {
      const res = await authorize(svid.token, action, 'https://api.example');
      expect([action, res.body.decision]).toEqual([action, 'deny']);
    }
  });

  it('answers credential_inactive for expired and revoked tokens, and never shows policy text', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/short`, { audience: ['https://api.example'], ttl: 60 });
    expect((await authorize(svid.token, 'read', 'reports')).body.decision).toBe('allow');
    clock.advance(120_000);
    expect((await authorize(svid.token, 'read', 'reports')).body).toEqual({
      decision: 'deny',
      reasons: ['credential_inactive'],
    });
    const other = await issueSvid(b, `spiffe://${TD}/revoked`, { audience: ['https://api.example'] });
    expect((await b.admin('POST', `/v1/admin/credentials/${other.id}/revoke`)).status).toBe(200);
    const res = await authorize(other.token, 'read', 'reports');
    expect(res.body).toEqual({ decision: 'deny', reasons: ['credential_inactive'] });
    const tampered = `${other.token.slice(0, -4)}AAAA`;
    expect((await authorize(tampered, 'read', 'reports')).body.reasons).toEqual(['credential_inactive']);
    const live = await issueSvid(b, `spiffe://${TD}/text`, { audience: ['https://api.example'] });
    const denied = await authorize(live.token, 'write', 'reports');
    expect(denied.text).not.toMatch(/permit|forbid|principal|context\./);
  });

  it('fixed: a policy on selectors at /v1/authorize fails closed (selectors are attestation-time facts)', async () => {
    // At issuance the quarantined workload gets a credential for the API; reading reports is forbidden to it.
    const svid = await issueSvid(b, QUARANTINED, { audience: ['https://api.example'] });
    // (Kept on its own action: a selector forbid makes that action fail closed at use time for everyone.)
    const res = await authorize(svid.token, 'write', 'reports');
    expect(res.body.decision).toBe('deny');
    expect(res.body.reasons).toContain('no-quarantined-readers');
  });

  it("FINDING: at use time context.source_ip is the relying party's address, not the token holder's", async () => {
    // The policy lets the ledger be read from the loopback network only. A token replayed from 203.0.113.9
    // reaches a relying party on loopback, which asks the broker: the broker sees the relying party.
    const svid = await issueSvid(b, `spiffe://${TD}/ledger-reader`, { audience: ['https://api.example'] });
    const verifier = createVerifier({
      issuer: b.url,
      audience: 'https://api.example',
      now: clock.clock,
      revocationFeed: false,
    });
    await verifier.start();
    const authorizer = createAuthorizer({ issuer: b.url, cacheTtlMs: 0 });
    const app = express();
    app.set('trust proxy', 'loopback');
    app.get(
      '/ledger',
      requireSvid(verifier, { authorize: { authorizer, action: 'read', resource: 'ledger' } }),
      (_req, res) => {
        res.json({ ok: true });
      },
    );
    const server = await new Promise<Server>((resolve) => {
      const srv = app.listen(0, '127.0.0.1', () => resolve(srv));
    });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/ledger`;
      const fromOutside = await fetch(url, {
        headers: { authorization: `Bearer ${svid.token}`, 'x-forwarded-for': '203.0.113.9' },
      });
      expect(fromOutside.status).toBe(403);
    } finally {
      verifier.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('fixed: the SDK keeps a cached decision after an answer showed the policies changed', async () => {
    // docs/policy.md: decisions carry the policy version "so a cached /v1/authorize answer is dropped when the
    // policies change". The SDK's cache ignores policyVersion.
    const svid = await issueSvid(b, `spiffe://${TD}/cached`, { audience: ['https://api.example'] });
    let now = 0;
    const authorizer = createAuthorizer({ issuer: b.url, cacheTtlMs: 60_000, now: () => now });
    writeFileSync(
      join(dir, 'archive.cedar'),
      '@id("archive") permit (principal, action == Writ::Action::"read", resource == Writ::Resource::"archive");\n',
    );
    try {
      const reload = () =>
        asAdmin(b, alice, 'POST', '/v1/admin/policy/reload', { otp: freshCode(alice, clock) });
      expect((await reload()).status).toBe(200);
      expect((await authorizer.authorize(svid.token, { action: 'read', resource: 'archive' })).decision).toBe(
        'allow',
      );
      rmSync(join(dir, 'archive.cedar'));
      expect((await reload()).status).toBe(200);
      now += 10;
      // This answer comes from the new policy set (a new policyVersion)...
      expect((await authorizer.authorize(svid.token, { action: 'read', resource: 'reports' })).decision).toBe(
        'allow',
      );
      // ...yet the old allow is still served from the cache.
      expect((await authorizer.authorize(svid.token, { action: 'read', resource: 'archive' })).decision).toBe(
        'deny',
      );
    } finally {
      rmSync(join(dir, 'archive.cedar'), { force: true });
    }
  });

  it('keeps the audit chain valid through all of the above', async () => {
    const verify = await asAdmin(b, alice, 'GET', '/v1/admin/audit/verify');
    expect(verify.body).toMatchObject({ valid: true });
  });
});

describe('source address without a trusted proxy', () => {
  let b: TestBroker;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-attacks-noproxy-'));
    writeFileSync(join(dir, 'rules.cedar'), POLICIES);
    writeFileSync(join(dir, 'actions.cedarschema'), ACTIONS);
    // trustProxy false (the default); and a proxy subnet that does not contain the caller.
    b = await startTestBroker({ config: { trustDomain: TD, policy: { dir } } as never });
  });
  afterAll(async () => {
    await b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ignores X-Forwarded-For when no proxy is trusted', async () => {
    for (const xff of ['10.1.2.3', '10.1.2.3, 10.9.9.9', '::ffff:10.1.2.3']) {
      const res = await askJwt(
        b,
        `spiffe://${TD}/spoof`,
        ['https://corp.example'],
        {},
        { 'x-forwarded-for': xff },
      );
      expect([xff, res.status]).toEqual([xff, 403]);
    }
    const svid = await issueSvid(b, `spiffe://${TD}/spoof-az`, { audience: ['https://api.example'] });
    const res = await b.request('POST', '/v1/authorize', {
      body: { token: svid.token, action: 'read', resource: 'secret-report' },
      headers: { 'x-forwarded-for': '10.1.2.3' },
    });
    expect(res.body.decision).toBe('deny');
  });

  it('ignores X-Forwarded-For from a caller outside the trusted proxy subnet', async () => {
    const other = await startTestBroker({
      config: { trustDomain: TD, policy: { dir }, server: { trustProxy: '10.9.9.9/32' } } as never,
    });
    try {
      const res = await askJwt(
        other,
        `spiffe://${TD}/spoof2`,
        ['https://corp.example'],
        {},
        {
          'x-forwarded-for': '10.1.2.3',
        },
      );
      expect(res.status).toBe(403);
    } finally {
      await other.close();
    }
  });
});

describe("the SDK authorizer's decision cache", () => {
  function fakeBroker() {
    const calls: Array<{ token: string; action: string; resource: string; context?: unknown }> = [];
    const fetchImpl = (async (_url: string | URL | Request, init?: RequestInit) => {
      const body = JSON.parse(String(init?.body));
      calls.push(body);
      const allow = body.token === 'token-a' && (body.context?.env ?? 'prod') === 'prod';
      return new Response(JSON.stringify({ decision: allow ? 'allow' : 'deny', reasons: [] }), {
        status: 200,
        headers: { 'content-type': 'application/json' },
      });
    }) as typeof fetch;
    return { calls, fetchImpl };
  }

  it("never answers for token B with token A's decision, nor for one context with another's", async () => {
    const { calls, fetchImpl } = fakeBroker();
    const az = createAuthorizer({
      issuer: 'https://writ.example',
      fetch: fetchImpl,
      cacheTtlMs: 60_000,
      now: () => 0,
    });
    expect((await az.authorize('token-a', { action: 'read', resource: 'r' })).decision).toBe('allow');
    expect((await az.authorize('token-b', { action: 'read', resource: 'r' })).decision).toBe('deny');
    expect(
      (await az.authorize('token-a', { action: 'read', resource: 'r', context: { env: 'dev' } })).decision,
    ).toBe('deny');
    expect((await az.authorize('token-a', { action: 'write', resource: 'r' })).decision).toBe('allow');
    expect((await az.authorize('token-a', { action: 'read', resource: 'r2' })).decision).toBe('allow');
    // A context value of another type is another question.
    await az.authorize('token-a', { action: 'read', resource: 'r', context: { n: 1 } });
    await az.authorize('token-a', { action: 'read', resource: 'r', context: { n: '1' } });
    expect(calls).toHaveLength(7);
    // The same question is answered from the cache.
    await az.authorize('token-a', { action: 'read', resource: 'r' });
    expect(calls).toHaveLength(7);
  });

  it('fails closed on a broker answer it cannot read', async () => {
    const az = createAuthorizer({
      issuer: 'https://writ.example',
      fetch: (async () => new Response('{"decision":"allow!"}', { status: 200 })) as typeof fetch,
    });
    await expect(az.authorize('t', { action: 'read', resource: 'r' })).rejects.toMatchObject({
      code: 'ERR_AUTHORIZE_UNAVAILABLE',
    });
  });
});

describe('replicas on one Redis: TOTP and approvals under concurrency', () => {
  let a: TestBroker;
  let c: TestBroker;
  let dir: string;
  const clock = new FakeClock();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'writ-attacks-redis-'));
    writeFileSync(join(dir, 'rules.cedar'), POLICIES);
    writeFileSync(join(dir, 'actions.cedarschema'), ACTIONS);
    const config = {
      trustDomain: TD,
      issuer: 'https://writ.example.org',
      policy: { dir },
      redis: { prefix: uniquePrefix('admin-policy-attacks') },
    } as never;
    [a, c] = await Promise.all([
      startTestBroker({ store: 'redis', config, clock: clock.clock }),
      startTestBroker({ store: 'redis', config, clock: clock.clock }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), c?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('accepts one code once even when it reaches both replicas at the same time', async () => {
    const hank = await createAdmin(a, 'hank');
    const code = freshCode(hank, clock);
    const results = await Promise.all(
      [a, c, a, c].map((replica, i) =>
        asAdmin(replica, hank, 'POST', '/v1/admin/join-tokens', {
          body: { spiffeId: `spiffe://${TD}/race-${i}` },
          otp: code,
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 401, 401, 401]);
  });

  it('counts every one of many parallel wrong codes: the lock holds', async () => {
    const ivy = await createAdmin(a, 'ivy');
    const good = freshCode(ivy, clock);
    const bad = good === '000000' ? '111111' : '000000';
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        asAdmin(i % 2 ? a : c, ivy, 'POST', '/v1/admin/accounts', { body: { name: `ivy${i}` }, otp: bad }),
      ),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(4);
    expect(statuses.filter((s) => s === 423).length).toBeGreaterThanOrEqual(8);
    const locked = await asAdmin(c, ivy, 'POST', '/v1/admin/join-tokens', {
      body: { spiffeId: `spiffe://${TD}/ivy` },
      otp: good,
    });
    expect(locked.status).toBe(423);
  });

  it('fixed: an approve and a deny sent at once by two admins are both accepted over HTTP', async () => {
    const jack = await createAdmin(a, 'jack');
    const kate = await createAdmin(a, 'kate');
    const jt = await joinToken(a, `spiffe://${TD}/vault-r`);
    const asked = await a.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: ['https://vault.example'] },
    });
    expect(asked.status).toBe(202);
    const id = asked.body.approval as string;
    const [deny, approve] = await Promise.all([
      asAdmin(a, kate, 'POST', `/v1/admin/approvals/${id}/deny`, { otp: freshCode(kate, clock) }),
      asAdmin(c, jack, 'POST', `/v1/admin/approvals/${id}/approve`, { otp: freshCode(jack, clock) }),
    ]);
    expect([deny.status, approve.status].sort()).toEqual([200, 409]);
  });
});
