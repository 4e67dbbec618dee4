// `writ server --workers 2` as an operator runs it: one primary, two broker processes on one port, the
// lifecycle worker once, metrics summed over both, a dead process replaced, and a clean stop on SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'writ.js');
const TD = 'writ.local';
const SPIFFE_ID = `spiffe://${TD}/workers/test`;
const AUDIENCE = 'https://api.example';
const PERMIT =
  '@id("issue") permit (principal, action in [Writ::Action::"issue_jwt", Writ::Action::"issue_x509"], resource);\n';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Node processes whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      // Not tsx's esbuild service, which the processes may also start.
      if (ppid === pid && comm === 'node') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('writ server --workers 2', { timeout: 90_000 }, () => {
  const prefix = uniquePrefix('workers');
  const adminToken = `writ_admin_${randomBytes(24).toString('base64url')}`;
  const key = `workers-${randomBytes(24).toString('base64url')}`;
  let redis: Redis;
  let primary: ChildProcess;
  let url: string;
  let output = '';
  let policyDir: string;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /** One request on a connection of its own: the primary hands each new connection to the next process. */
  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; text: string; json: () => Record<string, unknown> }>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(`${url}${path}`, {
        method,
        agent: false,
        headers: { ...(payload === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text,
            json: () => JSON.parse(text) as Record<string, unknown>,
          }),
        );
      });
      req.end(payload);
    });
  /** waitFor, with the cluster's output in the error. */
  const until = (probe: () => boolean, what: string, timeoutMs = 30_000) =>
    waitFor(probe, { timeoutMs, intervalMs: 50, what }).catch((e: Error) => {
      throw new Error(`${e.message}\n${output}`);
    });
  const issue = () =>
    call('POST', '/v1/svid/jwt', { attestor: 'static_key', evidence: { key }, audience: [AUDIENCE] });

  beforeAll(async () => {
    redis = await testRedis();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'writ-workers-'));
    const configFile = join(dir, 'writ.yaml');
    policyDir = join(dir, 'policies');
    mkdirSync(policyDir);
    writeFileSync(join(policyDir, 'allow.cedar'), PERMIT);
    writeFileSync(
      configFile,
      stringify({
        trustDomain: TD,
        server: { insecureHttp: true, shutdownGraceMs: 2000 },
        policy: { dir: policyDir },
        attestors: {
          static_key: { keys: [{ id: 'workers', sha256: createHash('sha256').update(key).digest('hex') }] },
        },
      }),
    );
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WRIT_')));
    primary = spawn(process.execPath, [BIN, 'server', '--workers', '2'], {
      cwd: ROOT,
      env: {
        ...base,
        NODE_ENV: 'production',
        REDIS_URL: await testRedisUrl(),
        WRIT_REDIS_PREFIX: prefix,
        WRIT_ADMIN_TOKEN: adminToken,
        WRIT_CONFIG: configFile,
        WRIT_ISSUER: url,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (d: Buffer) => {
      output += d.toString();
    };
    primary.stdout?.on('data', keep);
    primary.stderr?.on('data', keep);
    exited = new Promise((resolve) => primary.on('exit', (code, signal) => resolve({ code, signal })));
    await until(() => output.includes('writ listening with worker processes'), 'the cluster', 60_000);
    const entry = await call(
      'POST',
      '/v1/admin/entries',
      { spiffeId: SPIFFE_ID, selectors: ['static_key:id:workers'] },
      { authorization: `Bearer ${adminToken}` },
    );
    expect(entry.status, entry.text).toBe(201);
  });

  afterAll(async () => {
    if (primary && primary.exitCode === null && primary.signalCode === null) primary.kill('SIGKILL');
    for (const pid of primary?.pid ? childrenOf(primary.pid) : []) process.kill(pid, 'SIGKILL');
    if (redis) {
      await deleteKeys(redis, prefix);
      await redis.quit();
    }
  });

  it('serves from two processes, runs one lifecycle worker, and sums their metrics', async () => {
    expect(childrenOf(primary.pid!)).toHaveLength(2);
    expect(output.match(/lifecycle worker started/g)).toHaveLength(1);

    const jwks = createRemoteJWKSet(new URL(`${url}/.well-known/jwks.json`));
    const issued = await Promise.all(Array.from({ length: 20 }, () => issue()));
    for (const res of issued) {
      expect(res.status, res.text).toBe(200);
      const { payload } = await jwtVerify(res.json().token as string, jwks, {
        issuer: url,
        audience: AUDIENCE,
      });
      expect(payload.sub).toBe(SPIFFE_ID);
    }
    // Fresh connections are handed to the processes in turn: both have issued, and /metrics counts both.
    const metrics = await call('GET', '/metrics');
    expect(metrics.status).toBe(200);
    const count = /^writ_svid_issued_total\{type="jwt",attestor="static_key"\} (\d+)$/m.exec(metrics.text);
    expect(Number(count?.[1])).toBe(20);
  });

  it('replaces a broker process that dies, and keeps issuing', async () => {
    const [victim, other] = childrenOf(primary.pid!);
    process.kill(victim!, 'SIGKILL');
    await until(() => {
      const now = childrenOf(primary.pid!);
      return now.length === 2 && !now.includes(victim!) && now.includes(other!);
    }, 'a replacement process');
    await until(
      () => (output.match(/"msg":"writ listening"/g) ?? []).length >= 3,
      'the replacement to listen',
    );
    for (let i = 0; i < 6; i++) expect((await issue()).status).toBe(200);
  });

  it('reloads the policies in every process when one reloads them', async () => {
    writeFileSync(
      join(policyDir, 'fence.cedar'),
      `@id("fence") forbid (principal, action, resource == Writ::Audience::"${AUDIENCE}");\n`,
    );
    const reload = await call('POST', '/v1/admin/policy/reload', undefined, {
      authorization: `Bearer ${adminToken}`,
    });
    expect(reload.status, reload.text).toBe(200);
    await until(
      () => output.includes('policies reloaded (another worker did)'),
      'the other process to reload',
    );
    const denied = await Promise.all(Array.from({ length: 6 }, () => issue()));
    for (const res of denied) {
      expect(res.status, res.text).toBe(403);
      expect(res.json().policies).toEqual(['fence']);
    }
  });

  it('stops every process on SIGTERM and exits 0', async () => {
    const children = childrenOf(primary.pid!);
    expect(children).toHaveLength(2);
    primary.kill('SIGTERM');
    const { code } = await exited;
    expect(code, output).toBe(0);
    for (const pid of children) expect(alive(pid)).toBe(false);
  });
});

describe('writ server --workers: refused', { timeout: 30_000 }, () => {
  const run = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const base = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith('WRIT_') && k !== 'REDIS_URL'),
      );
      const child = spawn(process.execPath, [BIN, 'server', ...args], {
        cwd: ROOT,
        env: { ...base, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.on('error', reject);
      child.on('exit', (code) => resolve({ code, stderr }));
    });

  it('in dev mode, whose state lives in one process', async () => {
    const { code, stderr } = await run(['--workers', '2'], { NODE_ENV: 'development' });
    expect(code).toBe(2);
    expect(stderr).toMatch(/--workers needs production mode/);
  });

  it.each([['0'], ['65'], ['two'], ['1.5']])('with --workers %s', async (n) => {
    const { code, stderr } = await run(['--workers', n], {});
    expect(code).toBe(2);
    expect(stderr).toMatch(/--workers must be a whole number from 1 to 64/);
  });
});
