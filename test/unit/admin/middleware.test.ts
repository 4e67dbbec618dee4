// requireAdmin and requireOtp on the wire: a tiny express app with the broker's own error handler.
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import express from 'express';
import { generateSync } from 'otplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryAdminAccounts } from '../../../src/admin/memory.accounts.ts';
import { type AdminAuthDeps, requireAdmin, requireOtp } from '../../../src/admin/middleware.ts';
import type { AuditLog, AuditRecord } from '../../../src/audit/audit-log.ts';
import { MemoryAuditLog } from '../../../src/audit/memory.audit.ts';
import type { Deps } from '../../../src/deps.ts';
import { WritError } from '../../../src/errors.ts';
import { errorHandler } from '../../../src/http/middleware.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { FakeClock } from '../../helpers/clock.ts';

const BOOTSTRAP = 'bootstrap-token-of-at-least-32-characters!';
const START = 1_700_000_025_000;

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

let server: Server;
let base: string;
let fake: FakeClock;
let accounts: MemoryAdminAccounts;
let audit: MemoryAuditLog;
let lines: LogLine[];
let deps: AdminAuthDeps;
let alice: { token: string; secret: string };

function startApp(d: AdminAuthDeps): Promise<void> {
  const app = express();
  app.get('/v1/admin/things', requireAdmin(d), (_req, res) => {
    res.json({ admin: res.locals.admin });
  });
  app.post('/v1/admin/revocations', requireAdmin(d), requireOtp(d), (_req, res) => {
    res.status(202).json({ admin: res.locals.admin });
  });
  app.use(errorHandler({ logger: d.logger } as Deps));
  return new Promise((resolve) => {
    server = app.listen(0, '127.0.0.1', () => {
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      resolve();
    });
  });
}

beforeEach(async () => {
  fake = new FakeClock(START);
  accounts = new MemoryAdminAccounts({ clock: fake.clock });
  audit = new MemoryAuditLog({ clock: fake.clock });
  lines = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  deps = {
    accounts,
    audit,
    clock: fake.clock,
    logger: createLogger('info', sink),
    bootstrapTokenHash: createHash('sha256').update(BOOTSTRAP).digest(),
  };
  const created = await accounts.create('alice');
  alice = { token: created.token, secret: new URL(created.otpauthUri).searchParams.get('secret')! };
  await startApp(deps);
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function call(method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}${path}`, { method, headers });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

const code = (ms = fake.now()) => generateSync({ secret: alice.secret, epoch: Math.floor(ms / 1000) });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const privileged = (token: string, otp?: string) =>
  call('POST', '/v1/admin/revocations', {
    ...bearer(token),
    ...(otp === undefined ? {} : { 'x-writ-otp': otp }),
  });

async function records(): Promise<AuditRecord[]> {
  return (await audit.page({ limit: 1000 })).records;
}

describe('requireAdmin', () => {
  it('refuses a request without a bearer token: 401 ERR_ADMIN_UNAUTHENTICATED with WWW-Authenticate', async () => {
    for (const headers of [{}, { authorization: 'Basic YWxpY2U6eA==' }, { authorization: 'Bearer' }]) {
      const res = await call('GET', '/v1/admin/things', headers);
      expect(res.status).toBe(401);
      expect(res.body).toEqual({
        error: 'ERR_ADMIN_UNAUTHENTICATED',
        error_description: 'a valid admin bearer token is required',
      });
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="writ-admin"');
    }
    expect(await records()).toEqual([]); // no token presented: nothing to audit
  });

  it('refuses an unknown token, logs and audits the failure without the token', async () => {
    const wrong = `writ_admin_${'Z'.repeat(43)}`;
    const res = await call('GET', '/v1/admin/things', bearer(wrong));
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('ERR_ADMIN_UNAUTHENTICATED');
    expect(lines.some((l) => l.msg === 'admin authentication failed' && l.level === 40)).toBe(true);
    const [failed] = await records();
    expect(failed).toMatchObject({
      type: 'admin.login.failed',
      actor: 'anonymous:http',
      decision: 'deny',
      details: { method: 'GET', path: '/v1/admin/things' },
    });
    expect(JSON.stringify({ lines, r: await records() })).not.toContain(wrong);
  });

  it('authenticates an account token', async () => {
    const res = await call('GET', '/v1/admin/things', bearer(alice.token));
    expect(res).toMatchObject({ status: 200, body: { admin: { name: 'alice', breakGlass: false } } });
    expect(await records()).toEqual([]);
  });

  it('refuses the token of a disabled account', async () => {
    await accounts.disable('alice');
    expect((await call('GET', '/v1/admin/things', bearer(alice.token))).status).toBe(401);
  });

  it('authenticates the bootstrap token as the break-glass admin, loudly', async () => {
    const res = await call('GET', '/v1/admin/things', bearer(BOOTSTRAP));
    expect(res).toMatchObject({ status: 200, body: { admin: { name: 'bootstrap', breakGlass: true } } });
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 40, msg: 'break-glass admin token used', admin: 'bootstrap' }),
    );
    expect(await records()).toMatchObject([{ type: 'admin.breakglass.used', actor: 'admin:bootstrap' }]);
    expect(JSON.stringify(lines)).not.toContain(BOOTSTRAP);
  });

  it('has no break-glass account without a bootstrap token hash', async () => {
    server.close();
    await startApp({ ...deps, bootstrapTokenHash: undefined });
    expect((await call('GET', '/v1/admin/things', bearer(BOOTSTRAP))).status).toBe(401);
  });

  it('answers 503 when the accounts store is unavailable', async () => {
    server.close();
    const down = {
      ...accounts,
      authenticate: async () => {
        throw new WritError('ERR_STORE_UNAVAILABLE');
      },
    } as unknown as MemoryAdminAccounts;
    await startApp({ ...deps, accounts: down });
    const res = await call('GET', '/v1/admin/things', bearer(alice.token));
    expect(res).toMatchObject({ status: 503, body: { error: 'ERR_STORE_UNAVAILABLE' } });
  });
});

describe('requireOtp', () => {
  it('asks for a code when none is sent: 401 ERR_OTP_REQUIRED, not counted as a failure', async () => {
    for (const otp of [undefined, '', '   ']) {
      const res = await privileged(alice.token, otp);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_OTP_REQUIRED');
      expect(res.body.error_description).toEqual(expect.any(String));
    }
    expect(await accounts.verifyOtp('alice', code())).toMatchObject({ ok: true });
  });

  it('lets a fresh code through once; its replay and a wrong code get 401 ERR_OTP_INVALID', async () => {
    const fresh = code();
    expect(await privileged(alice.token, fresh)).toMatchObject({
      status: 202,
      body: { admin: { name: 'alice' } },
    });
    const replay = await privileged(alice.token, fresh);
    expect(replay).toMatchObject({ status: 401, body: { error: 'ERR_OTP_INVALID' } });
    const wrong = fresh === '000000' ? '000001' : '000000';
    expect(await privileged(alice.token, wrong)).toMatchObject({
      status: 401,
      body: { error: 'ERR_OTP_INVALID' },
    });
    expect(await records()).toMatchObject([
      { type: 'admin.otp.failed', actor: 'admin:alice', details: { reason: 'replayed', failures: 1 } },
      { type: 'admin.otp.failed', actor: 'admin:alice', details: { reason: 'invalid', failures: 2 } },
    ]);
    fake.advance(30_000);
    expect((await privileged(alice.token, code())).status).toBe(202);
  });

  it('locks the account after 5 failures: 423 ERR_ACCOUNT_LOCKED with Retry-After, even for a right code', async () => {
    const wrong = code() === '000000' ? '000001' : '000000';
    for (let i = 0; i < 4; i++) expect((await privileged(alice.token, wrong)).status).toBe(401);
    const locking = await privileged(alice.token, wrong);
    expect(locking).toMatchObject({ status: 423, body: { error: 'ERR_ACCOUNT_LOCKED' } });
    expect(locking.headers.get('retry-after')).toBe('900');
    fake.advance(60_000);
    const right = await privileged(alice.token, code());
    expect(right).toMatchObject({ status: 423, body: { error: 'ERR_ACCOUNT_LOCKED' } });
    expect(right.headers.get('retry-after')).toBe('840');
    expect((await records()).map((r) => r.type)).toContain('admin.account.locked');
    expect(lines.some((l) => l.msg === 'admin account locked after TOTP failures')).toBe(true);
    // reading needs only the token
    expect((await call('GET', '/v1/admin/things', bearer(alice.token))).status).toBe(200);
    fake.advance(15 * 60_000);
    expect((await privileged(alice.token, code())).status).toBe(202);
  });

  it('lets the break-glass admin through without a code, logged at warn and audited', async () => {
    const res = await privileged(BOOTSTRAP);
    expect(res).toMatchObject({ status: 202, body: { admin: { name: 'bootstrap', breakGlass: true } } });
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 40,
        msg: 'break-glass admin token used for a privileged operation without TOTP',
      }),
    );
    expect((await records()).map((r) => [r.type, r.actor])).toEqual([
      ['admin.breakglass.used', 'admin:bootstrap'],
      ['admin.otp.bypassed', 'admin:bootstrap'],
    ]);
  });

  it('refuses a break-glass privileged operation that cannot be audited (503)', async () => {
    server.close();
    const failing: AuditLog = {
      kind: 'memory',
      append: async () => {
        throw new WritError('ERR_STORE_UNAVAILABLE');
      },
      page: async () => ({ records: [] }),
      verify: async () => ({ valid: true, checked: 0 }),
      head: async () => ({ seq: 0, hash: '0'.repeat(64) }),
    };
    await startApp({ ...deps, audit: failing });
    expect(await privileged(BOOTSTRAP)).toMatchObject({
      status: 503,
      body: { error: 'ERR_STORE_UNAVAILABLE' },
    });
    // a refusal is still a refusal when its audit fails
    expect((await privileged(alice.token, 'abcdef')).status).toBe(401);
    expect(lines.some((l) => l.msg === 'audit append failed')).toBe(true);
  });

  it('refuses an account disabled after requireAdmin with 401 ERR_ADMIN_UNAUTHENTICATED', async () => {
    server.close();
    await startApp({
      ...deps,
      accounts: {
        ...accounts,
        kind: 'memory',
        authenticate: (token: string) => accounts.authenticate(token),
        verifyOtp: async () => ({ ok: false, reason: 'unknown' }),
      } as unknown as MemoryAdminAccounts,
    });
    const res = await privileged(alice.token, code());
    expect(res).toMatchObject({ status: 401, body: { error: 'ERR_ADMIN_UNAUTHENTICATED' } });
  });
});
