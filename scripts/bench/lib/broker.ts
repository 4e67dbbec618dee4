// Starts the broker under test as a child process in production mode (Redis + BullMQ), single or clustered.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { freePort } from '../../../test/helpers/redis-server.ts';
import { httpClient } from './http.ts';
import { type Child, mainThreadCpuMicros, sleep, startChild, treeCpuMicros } from './procs.ts';

export interface BrokerProcess {
  child: Child;
  /** Digest of the source it started from (others edit the tree while the benchmark runs). */
  source: string;
  url: string;
  /** Milliseconds from spawn to the first 200 from /readyz. */
  readyAfterMs: number;
  /** WRIT_ISSUER: the `iss` of its tokens and the audience that task completion needs. */
  issuer: string;
  /** CPU time of the broker process (and its cluster workers), microseconds. */
  cpuMicros(): number | null;
  /** CPU time of its main thread (event loop), microseconds; null for a cluster. */
  mainThreadCpuMicros(): number | null;
  stop(): Promise<void>;
}

export interface BrokerStart {
  name: string;
  redisUrl: string;
  adminToken: string;
  /** The YAML written to WRIT_CONFIG. */
  configYaml: string;
  tmpDir: string;
  /** Serve from this many processes (`src/main.ts --workers N`, node:cluster); default one plain process. */
  workers?: number;
  /** Listen on this port (a restarted broker keeps its issuer URL); a free one by default. */
  port?: number;
  /** Extra node options for the broker process (experiments: `--no-opt`, heap sizes...). */
  nodeOptions?: string[];
  /** Run under `node --cpu-prof`, writing the profiles (one per thread) into this directory. */
  cpuProfile?: { dir: string };
}

const ROOT = path.resolve(import.meta.dirname, '../../..');

/**
 * A digest of the broker's source (src/, attestors/, config/): two brokers started from different code are
 * not comparable, and the tree changes under a long run when others work in it.
 */
export function sourceDigest(): string {
  const hash = createHash('sha256');
  const walk = (dir: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const file = path.join(dir, e.name);
      if (e.isDirectory()) walk(file);
      else if (e.isFile() && !e.name.endsWith('.test.ts')) {
        hash.update(path.relative(ROOT, file));
        hash.update(readFileSync(file));
      }
    }
  };
  for (const dir of ['src', 'attestors', 'config']) walk(path.join(ROOT, dir));
  return hash.digest('hex').slice(0, 12);
}

export async function startBrokerProcess(opts: BrokerStart): Promise<BrokerProcess> {
  const port = opts.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  const configFile = path.join(opts.tmpDir, `${opts.name}.yaml`);
  writeFileSync(configFile, opts.configYaml);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'production',
    REDIS_URL: opts.redisUrl,
    WRIT_ADMIN_TOKEN: opts.adminToken,
    PORT: String(port),
    HOST: '127.0.0.1',
    WRIT_ISSUER: issuer,
    LOG_LEVEL: 'warn',
    WRIT_CONFIG: configFile,
  };
  const nodeArgs: string[] = [...(opts.nodeOptions ?? [])];
  if (opts.cpuProfile) {
    nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${opts.cpuProfile.dir}`);
  }
  nodeArgs.push('--import', 'tsx');
  nodeArgs.push(path.join(ROOT, 'src/main.ts'));
  if (opts.workers !== undefined && opts.workers > 1) nodeArgs.push('--workers', String(opts.workers));
  const source = sourceDigest();
  const spawnedAt = Date.now();
  const child = startChild(opts.name, process.execPath, nodeArgs, { env, cwd: ROOT });
  const broker: BrokerProcess = {
    child,
    source,
    readyAfterMs: 0,
    url: issuer,
    issuer,
    cpuMicros: () => treeCpuMicros(child.pid),
    mainThreadCpuMicros: () =>
      opts.workers !== undefined && opts.workers > 1 ? null : mainThreadCpuMicros(child.pid),
    stop: () => child.stop(20_000),
  };
  try {
    await waitReady(broker, 60_000);
    broker.readyAfterMs = Date.now() - spawnedAt;
  } catch (e) {
    await child.stop(2_000);
    throw e;
  }
  return broker;
}

async function waitReady(broker: BrokerProcess, timeoutMs: number): Promise<void> {
  const client = httpClient(broker.url, 1);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      if (broker.child.exited()) {
        throw new Error(`${broker.child.name} exited before /readyz answered:\n${broker.child.output()}`);
      }
      try {
        const res = await client.request('GET', '/readyz');
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(
          `${broker.child.name}: /readyz not 200 after ${timeoutMs} ms\n${broker.child.output()}`,
        );
      }
      await sleep(100);
    }
  } finally {
    client.close();
  }
}
