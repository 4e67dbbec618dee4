// The `writ` CLI against a real broker: each case runs `node bin/writ.js ...` as a child process.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'writ.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

// Each case starts several Node processes: allow for a loaded machine.
describe('writ CLI', { timeout: 60_000 }, () => {
  let b: TestBroker;
  let tmp: string;
  const outputs: string[] = [];

  beforeAll(async () => {
    b = await startTestBroker({ config: { trustDomain: TD } });
    tmp = mkdtempSync(join(tmpdir(), 'writ-cli-'));
  });
  afterAll(async () => {
    await b?.close();
  });

  /** Runs the CLI with WRIT_URL set and no other WRIT_* variable from the test's environment. */
  function writ(args: string[], env: Record<string, string> = {}): Promise<Run> {
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WRIT_')));
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        cwd: ROOT,
        env: { ...base, WRIT_URL: b.url, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => {
        outputs.push(stdout, stderr);
        resolve({ code, stdout, stderr });
      });
    });
  }
  const asRoot = () => ({ WRIT_ADMIN_TOKEN: b.adminToken });
  const json = (run: Run) => {
    expect(run.code, run.stderr).toBe(0);
    // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
    return JSON.parse(run.stdout) as any;
  };
  const introspect = async (token: string) =>
    (
      await b.request('POST', '/v1/introspect', {
        body: { token },
        headers: { authorization: `Bearer ${b.adminToken}` },
      })
    ).body;

  it('admin add prints a token and TOTP URI once; that account needs a fresh TOTP code to change entries', async () => {
    const alice = json(await writ(['admin', 'add', 'alice', '--json'], asRoot()));
    expect(alice.token).toMatch(/^writ_admin_/);
    const secret = new URL(alice.otpauthUri).searchParams.get('secret')!;

    const bob = await writ(['admin', 'add', 'bob'], asRoot());
    expect(bob.code, bob.stderr).toBe(0);
    expect(bob.stdout).toMatch(/token:\s+writ_admin_/);
    expect(bob.stdout).toContain('otpauth://totp/');
    expect(bob.stdout).toMatch(/shown only this once/);

    const spiffeId = `spiffe://${TD}/cli/svc`;
    const create = ['entries', 'create', '--spiffe-id', spiffeId, '--selector', 'join_token:spiffe_id:svc'];
    const flags = ['--audience', 'https://api.example', '--jwt-ttl', '600'];
    const missing = await writ([...create, ...flags], { WRIT_ADMIN_TOKEN: alice.token });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: ERR_OTP_REQUIRED: /);
    expect(missing.stdout).toBe('');

    const code = generateSync({ secret, epoch: Math.floor(Date.now() / 1000) });
    const entry = json(
      await writ([...create, ...flags, '--otp', code, '--json'], { WRIT_ADMIN_TOKEN: alice.token }),
    );
    expect(entry).toMatchObject({ spiffeId, audiences: ['https://api.example'], jwtTtl: 600 });

    // Reading needs the token only.
    const listed = json(await writ(['entries', 'list', '--json'], { WRIT_ADMIN_TOKEN: alice.token }));
    expect(listed.entries.map((e: { id: string }) => e.id)).toContain(entry.id);
    const table = await writ(['entries', 'list'], { WRIT_ADMIN_TOKEN: alice.token });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+SPIFFE ID/);
    expect(table.stdout).toContain(entry.id);
    expect(table.stdout).toContain(spiffeId);

    const accounts = await writ(['admin', 'list'], { WRIT_ADMIN_TOKEN: alice.token });
    expect(accounts.code).toBe(0);
    expect(accounts.stdout).toMatch(/alice\s+\S+\s+active/);
    // The account's token appeared once, in `admin add`, and nowhere after.
    expect(accounts.stdout + table.stdout + missing.stderr).not.toContain(alice.token);
  });

  it('a workload exchanges a join token for a working JWT-SVID; revoke --task ends it', async () => {
    const spiffeId = `spiffe://${TD}/cli/deploy`;
    const jt = json(await writ(['join-token', 'create', '--spiffe-id', spiffeId, '--json'], asRoot()));
    expect(jt.token).toEqual(expect.any(String));
    const evidence = join(tmp, 'evidence.json');
    writeFileSync(evidence, JSON.stringify({ token: jt.token }));

    // The workload side sends no admin token (none is in its environment).
    const svid = json(
      await writ([
        'svid',
        'jwt',
        '--attestor',
        'join_token',
        '--evidence',
        `@${evidence}`,
        '--audience',
        'https://api.example',
        '--json',
      ]),
    );
    expect(svid).toMatchObject({ spiffeId, token: expect.any(String), task: expect.any(String) });
    expect(await introspect(svid.token)).toMatchObject({ active: true, sub: spiffeId, task: svid.task });

    // A spent join token: the broker's refusal, printed cleanly.
    const again = await writ([
      'svid',
      'jwt',
      '--attestor',
      'join_token',
      '--evidence',
      JSON.stringify({ token: jt.token }),
      '--audience',
      'https://api.example',
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error: ERR_ATTESTATION_FAILED: join_token/);

    const revoked = await writ(['revoke', '--task', svid.task, '--reason', 'key_compromise'], asRoot());
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(svid.task);
    expect((await introspect(svid.token)).active).toBe(false);

    const tasks = json(await writ(['tasks', 'list', '--json'], asRoot()));
    expect(tasks.items.find((t: { id: string }) => t.id === svid.task)).toMatchObject({
      status: 'revoked',
      owner: spiffeId,
    });
    const credential = json(await writ(['credentials', 'get', svid.id, '--json'], asRoot()));
    expect(credential).toMatchObject({ id: svid.id, status: 'revoked' });
  });

  it('tasks list --all follows the cursor to the last page', async () => {
    for (const n of [1, 2, 3]) await issueSvid(b, `spiffe://${TD}/cli/paged-${n}`);
    const first = json(await writ(['tasks', 'list', '--limit', '1', '--json'], asRoot()));
    expect(first.items).toHaveLength(1);
    expect(first.next).toEqual(expect.any(String));
    const all = json(await writ(['tasks', 'list', '--limit', '1', '--all', '--json'], asRoot()));
    const ids = all.items.map((t: { id: string }) => t.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBeGreaterThanOrEqual(4);
    expect(all.next).toBeNull();
  });

  it('audit verify exits 0 on an intact chain', async () => {
    const run = await writ(['audit', 'verify'], asRoot());
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/audit chain valid: \d+ record\(s\) checked/);
    const page = json(await writ(['audit', 'list', '--limit', '5', '--json'], asRoot()));
    expect(page.records.length).toBeGreaterThan(0);
  });

  it('policy check validates a directory offline and names the broken file', async () => {
    const good = await writ(['policy', 'check', 'config/policies']);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('default-issue');

    const dir = mkdtempSync(join(tmpdir(), 'writ-cli-policy-'));
    writeFileSync(join(dir, 'ok.cedar'), readFileSync(join(ROOT, 'config/policies/default.cedar'), 'utf8'));
    writeFileSync(
      join(dir, 'broken.cedar'),
      '@id("broken")\npermit (principal, action, resource) when { ;\n',
    );
    const bad = await writ(['policy', 'check', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/broken\.cedar:\d+:\d+: /);
  });

  it('an X.509-SVID with a generated key, or the API error printed cleanly', async () => {
    const spiffeId = `spiffe://${TD}/cli/x509`;
    const jt = json(await writ(['join-token', 'create', '--spiffe-id', spiffeId, '--json'], asRoot()));
    const key = join(tmp, 'svid.key');
    const run = await writ([
      'svid',
      'x509',
      '--attestor',
      'join_token',
      '--evidence',
      JSON.stringify({ token: jt.token }),
      '--generate-key',
      key,
    ]);
    if (run.code === 0) {
      expect(run.stdout).toContain('-----BEGIN CERTIFICATE-----');
      expect(statSync(key).mode & 0o777).toBe(0o600);
      expect(readFileSync(key, 'utf8')).toContain('-----BEGIN PRIVATE KEY-----');
    } else {
      // The endpoint may be missing on this broker: one clean line, and no orphaned key file.
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^error: [A-Za-z0-9_]+: /);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(existsSync(key)).toBe(false);
    }
  });

  it('keys list shows the rings without secrets; keys rotate promotes the next keys', async () => {
    const before = json(await writ(['keys', 'list', '--json'], asRoot()));
    expect(before.jwt.keys.map((k: { state: string }) => k.state)).toEqual(['current', 'next']);
    const text = await writ(['keys', 'list'], asRoot());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(before.jwt.keys[0].kid);
    expect(text.stdout).toContain(before.x509.authorities[0].keyId);
    expect(text.stdout + JSON.stringify(before)).not.toMatch(/PRIVATE KEY/);
    // The next key has not been published for a bundle refresh yet: a plain rotation is refused.
    const early = await writ(['keys', 'rotate', 'jwt'], asRoot());
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/^error: ERR_ROTATION_TOO_SOON: /);
    // As compromised: every JWT key is replaced at once; the CA is untouched.
    const after = json(await writ(['keys', 'rotate', 'jwt', '--compromised', '--json'], asRoot()));
    const oldKids = before.jwt.keys.map((k: { kid: string }) => k.kid);
    expect(after.jwt.keys.map((k: { state: string }) => k.state)).toEqual(['current', 'next']);
    for (const k of after.jwt.keys) expect(oldKids).not.toContain(k.kid);
    expect(after.x509.authorities[0].keyId).toBe(before.x509.authorities[0].keyId);
    expect(after.bundleSequence).toBeGreaterThan(before.bundleSequence);
    const bad = await writ(['keys', 'rotate', 'everything'], asRoot());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: invalid_request: /);
  });

  it('usage errors exit 2, API errors exit 1, and the admin token is never printed', async () => {
    const two = await writ(['revoke', '--task', 'a', '--id', 'b'], asRoot());
    expect(two.code).toBe(2);
    expect(two.stderr).toMatch(/exactly one of/);
    expect((await writ(['no-such-command'])).code).toBe(2);
    expect((await writ(['tasks', 'list', '--limit', 'many'], asRoot())).code).toBe(2);
    expect((await writ(['tasks', 'list'])).code).toBe(2); // no admin token

    const missing = await writ(['entries', 'get', '00000000-0000-4000-8000-000000000000'], asRoot());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: ERR_NOT_FOUND: /);

    const wrong = 'writ_admin_not-a-real-token-0123456789';
    const denied = await writ(['tasks', 'list'], { WRIT_ADMIN_TOKEN: wrong });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^error: ERR_ADMIN_UNAUTHENTICATED: /);
    expect(denied.stderr + denied.stdout).not.toContain(wrong);

    for (const text of outputs) expect(text).not.toContain(b.adminToken);
  });
});
