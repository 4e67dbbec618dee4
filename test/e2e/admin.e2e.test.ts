// Admin accounts with TOTP over HTTP: privileged routes need a fresh code, codes are single use, and every
// action lands in an audit chain that detects tampering.
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { testRedis } from '../helpers/redis.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';

describe.each(['memory', 'redis'] as const)('admin accounts and audit with the %s store', (store) => {
  let b: TestBroker;
  let token: string;
  let secret: string;
  let step = Math.floor(Date.now() / 30_000);

  beforeAll(async () => {
    b = await startTestBroker({ store, config: { trustDomain: TD } });
    // The bootstrap token is the break-glass account: it creates the first real account without a code.
    const created = await b.admin('POST', '/v1/admin/accounts', { name: 'alice' });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^writ_admin_/);
    token = created.body.token;
    secret = new URL(created.body.otpauthUri).searchParams.get('secret')!;
  });
  afterAll(async () => {
    await b?.close();
  });

  const asAlice = (method: string, path: string, body?: unknown, otp?: string) =>
    b.request(method, path, {
      ...(body === undefined ? {} : { body }),
      headers: { authorization: `Bearer ${token}`, ...(otp ? { 'x-writ-otp': otp } : {}) },
    });
  // A code of a later time step each time (codes are single use, and an older step is refused).
  const nextCode = () => {
    step += 1;
    return generateSync({ secret, epoch: step * 30 });
  };
  const currentCode = () => generateSync({ secret, epoch: Math.floor(Date.now() / 1000) });

  it('reads with the token alone, and needs a fresh TOTP code for privileged changes', async () => {
    expect((await asAlice('GET', '/v1/admin/entries')).status).toBe(200);
    const entry = { spiffeId: `spiffe://${TD}/svc`, selectors: ['join_token:spiffe_id:x'] };
    const missing = await asAlice('POST', '/v1/admin/entries', entry);
    expect(missing.status).toBe(401);
    expect(missing.body.error).toBe('ERR_OTP_REQUIRED');
    const wrong = await asAlice(
      'POST',
      '/v1/admin/entries',
      entry,
      '000000' === currentCode() ? '111111' : '000000',
    );
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('ERR_OTP_INVALID');
    const code = currentCode();
    const ok = await asAlice('POST', '/v1/admin/entries', entry, code);
    expect(ok.status).toBe(201);
    const replay = await asAlice('DELETE', `/v1/admin/entries/${ok.body.id}`, undefined, code);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('ERR_OTP_INVALID');
    expect((await asAlice('GET', `/v1/admin/entries/${ok.body.id}`)).status).toBe(200);
    // A bulk revocation without a code changes nothing.
    const svid = await issueSvid(b, `spiffe://${TD}/bulk`);
    expect((await asAlice('POST', '/v1/admin/revocations', { spiffeId: `spiffe://${TD}/bulk` })).status).toBe(
      401,
    );
    const intro = await b.request('POST', '/v1/introspect', {
      body: { token: svid.token },
      headers: { authorization: `Bearer ${token}` },
    });
    expect(intro.body.active).toBe(true);
  });

  it('locks an account after repeated failures', async () => {
    const bob = await b.admin('POST', '/v1/admin/accounts', { name: 'bob' });
    const bobToken = bob.body.token as string;
    const bobSecret = new URL(bob.body.otpauthUri).searchParams.get('secret')!;
    const good = generateSync({ secret: bobSecret, epoch: Math.floor(Date.now() / 1000) });
    const bad = good === '000000' ? '111111' : '000000';
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await b.request('POST', '/v1/admin/accounts', {
        body: { name: `x${i}` },
        headers: { authorization: `Bearer ${bobToken}`, 'x-writ-otp': bad },
      });
      statuses.push(res.status);
    }
    expect(statuses.slice(0, 4)).toEqual([401, 401, 401, 401]);
    expect(statuses.slice(4)).toEqual([423, 423]);
    const locked = await b.request('POST', '/v1/admin/accounts', {
      body: { name: 'x9' },
      headers: { authorization: `Bearer ${bobToken}`, 'x-writ-otp': good },
    });
    expect(locked.status).toBe(423);
    expect(locked.body.error).toBe('ERR_ACCOUNT_LOCKED');
  });

  it('records every action in an audit chain that verifies, with secrets only as hashes', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/audited`);
    const verify = await asAlice('GET', '/v1/admin/audit/verify');
    expect(verify.status).toBe(200);
    expect(verify.body.valid).toBe(true);
    const page = await asAlice('GET', '/v1/admin/audit?limit=1000');
    const records = page.body.records as Array<{
      type: string;
      subject?: string;
      details?: Record<string, unknown>;
    }>;
    const types = records.map((r) => r.type);
    for (const t of [
      'admin.account.created',
      'admin.entry.created',
      'admin.join_token.created',
      'svid.issued',
    ]) {
      expect(types).toContain(t);
    }
    expect(
      records.find((r) => r.type === 'svid.issued' && r.subject === `credential:${svid.id}`),
    ).toBeDefined();
    const text = JSON.stringify(records);
    expect(text).not.toMatch(/writ_jt_|writ_admin_|eyJ/);
    expect(text).toContain('sha256:');
  });

  if (store === 'redis') {
    it('detects a record altered in Redis at its position', async () => {
      const redis = await testRedis();
      try {
        const stream = `${b.broker.deps.config.redis.prefix}audit`;
        const entries = await redis.xrange(stream, '-', '+');
        expect(entries.length).toBeGreaterThan(3);
        const [targetId] = entries[2]!;
        await redis.del(stream);
        for (const [id, fields] of entries) {
          const changed = [...fields];
          if (id === targetId) {
            const i = changed.findIndex((f, j) => j % 2 === 0 && f === 'actor');
            changed[i + 1] = 'admin:mallory';
          }
          await redis.xadd(stream, id, ...changed);
        }
        const verify = await asAlice('GET', '/v1/admin/audit/verify');
        expect(verify.body.valid).toBe(false);
        expect(verify.body.brokenAt).toBe(Number(targetId!.split('-')[0]));
      } finally {
        redis.disconnect();
      }
    });
  }
  void nextCode;
});
