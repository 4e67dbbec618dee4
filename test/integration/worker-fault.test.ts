// The lifecycle worker killed in the middle of a fan-out: a restarted worker finishes it, exactly once each.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seconds } from '../../src/store/types.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { waitFor } from '../helpers/wait.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/fanout`;
const N = 3_000;

function startWorker(env: Record<string, string>): {
  child: ChildProcess;
  ready: Promise<void>;
  output: () => string;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('lifecycle worker started')) resolve();
    });
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.on('exit', (code) => reject(new Error(`worker exited (${code}): ${output}`)));
  });
  return { child, ready, output: () => output };
}

describe('lifecycle worker crash during fan-out', () => {
  let redis: RedisServer;
  let b: TestBroker;
  const prefix = uniquePrefix('fault');
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    b = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, redis: { url: redis.url, prefix }, lifecycle: { worker: false } },
    });
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await b?.close();
    await redis?.stop();
  });

  it('resumes and finishes the fan-out after the worker is killed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-worker-'));
    const config = join(dir, 'writ.yaml');
    writeFileSync(
      config,
      'lifecycle:\n  fanoutBatchSize: 50\n  fanoutPauseMs: 25\n  jobLockMs: 1000\n  sweepIntervalMs: 600000\n',
    );
    const env = {
      WRIT_CONFIG: config,
      REDIS_URL: redis.url,
      WRIT_REDIS_PREFIX: prefix,
      WRIT_ADMIN_TOKEN: 'x'.repeat(40),
      WRIT_TRUST_DOMAIN: TD,
      LOG_LEVEL: 'info',
    };

    const task = 'fanout-task';
    const own = await issueSvid(b, ID, { task, audience: [b.url] });
    const { store, clock } = b.broker.deps;
    const now = seconds(clock);
    for (let start = 1; start < N; start += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, N - start) }, (_, i) =>
          store.recordIssuance(
            {
              id: `c-${start + i}`,
              type: 'jwt',
              spiffeId: ID,
              task,
              attestor: 'join_token',
              audience: ['x'],
              issuedAt: now,
              expiresAt: own.expiresAt,
              kid: 'k',
            },
            { id: task, owner: ID, origin: 'caller', deadline: now + 3600 },
          ),
        ),
      );
    }
    expect(await store.countTaskCredentials(task)).toBe(N);

    const first = startWorker(env);
    children.push(first.child);
    await first.ready;
    const credentialEvents = async () =>
      (await store.readRevocations(undefined, 10 * N)).filter(
        (e) => e.task === task && e.kind === 'credential',
      );

    expect(
      (
        await b.request('POST', `/v1/tasks/${task}/complete`, {
          headers: { authorization: `Bearer ${own.token}` },
        })
      ).status,
    ).toBe(202);
    await waitFor(async () => (await credentialEvents()).length > 0, {
      timeoutMs: 15_000,
      intervalMs: 5,
      what: 'fan-out to start',
    });
    first.child.kill('SIGKILL');
    await new Promise((r) => first.child.once('exit', r));
    const atKill = (await credentialEvents()).length;
    expect(atKill).toBeGreaterThan(0);
    expect(atKill).toBeLessThan(N);
    expect((await store.pendingTasks(seconds(clock), 10)).ending).toContain(task);

    const second = startWorker(env);
    children.push(second.child);
    await second.ready;
    await waitFor(async () => !(await store.pendingTasks(seconds(clock), 10)).ending.includes(task), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'the restarted worker to finish the fan-out',
    });
    const events = await credentialEvents();
    const ids = events.map((e) => e.credential);
    expect(new Set(ids).size).toBe(N);
    expect(ids.length).toBe(N);
    const sampleView = await store.getCredential('c-1234', task);
    expect(sampleView?.credential).toMatchObject({ revokedReason: 'task_completed' });
  });
});
