// Entry point of `npm start` / `writ server`: load config, start the broker, print the dev banner, shut down cleanly.
// With `--workers N` (production mode), a node:cluster primary runs N broker processes on one port.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { createJoinToken } from '../attestors/join_token/index.ts';
import { ConfigError, type LoadedConfig, loadConfig } from './config/loader.ts';
import { createLogger } from './observability/logger.ts';
import { startBroker } from './server.ts';
import { formatSpiffeId } from './spiffe/spiffe-id.ts';

const DEV_DIR = '.writ-dev';

function devBanner(url: string, adminToken: string | undefined, joinToken: string, spiffeId: string): string {
  const line = '='.repeat(78);
  return [
    line,
    ' WRIT DEV MODE - in-memory store, generated keys: everything is lost on exit.',
    ' Not for production (refused when NODE_ENV=production). Set REDIS_URL for production mode.',
    line,
    ` broker:       ${url}`,
    adminToken
      ? ` admin token:  ${adminToken}   (also in ${DEV_DIR}/admin-token)`
      : ' admin token:  from WRIT_ADMIN_TOKEN',
    ` demo join token for ${spiffeId} (single use, 1 h):`,
    `   ${joinToken}`,
    ' exchange it for a JWT-SVID:',
    `   curl -s ${url}/v1/svid/jwt -H 'content-type: application/json' \\`,
    `     -d '{"attestor":"join_token","evidence":{"token":"${joinToken}"},"audience":["https://api.example"]}'`,
    line,
    '',
  ].join('\n');
}

export interface ServerOptions {
  /** false: no lifecycle worker in this process (or, with `workers`, in this group of processes). */
  worker?: boolean;
  /** Serve from this many broker processes (node:cluster, one port); production mode only. */
  workers?: number;
}

export const MAX_WORKERS = 64;
/** Set by the cluster primary on the broker processes it forks. */
const CHILD_ENV = 'WRIT_CLUSTER_CHILD';

function loadOrExit(): LoadedConfig {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`writ: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
}

export async function runServer(opts: ServerOptions = {}): Promise<void> {
  const child = cluster.isWorker && process.env[CHILD_ENV] === '1';
  if (opts.workers !== undefined && !child) return runPrimary(opts.workers, opts.worker !== false);
  const loaded = loadOrExit();
  // A cluster's lifecycle worker runs in its primary, once, never in the broker processes.
  if (opts.worker === false || child) loaded.config.lifecycle.worker = false;

  let generatedAdminToken: string | undefined;
  if (loaded.mode === 'dev' && !loaded.config.adminToken) {
    generatedAdminToken = `writ_admin_${randomBytes(32).toString('base64url')}`;
  }
  const broker = await startBroker(loaded, generatedAdminToken ? { adminToken: generatedAdminToken } : {});
  const { deps } = broker;

  if (loaded.mode === 'dev') {
    const spiffeId = formatSpiffeId(deps.config.trustDomain, 'demo', 'workload');
    const demo = await createJoinToken(
      { store: deps.store, clock: deps.clock },
      {
        ...deps.config.attestors.join_token,
        maxTtl: Math.max(3600, deps.config.attestors.join_token.maxTtl),
      },
      { spiffeId, ttl: 3600 },
    );
    if (generatedAdminToken) {
      mkdirSync(DEV_DIR, { recursive: true, mode: 0o700 });
      writeFileSync(`${DEV_DIR}/admin-token`, `${generatedAdminToken}\n`, { mode: 0o600 });
    }
    deps.logger.warn('DEV MODE: in-memory store and generated keys; do not use in production');
    process.stdout.write(devBanner(broker.url, generatedAdminToken, demo.token, spiffeId));
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    deps.logger.info({ signal }, 'shutting down');
    broker.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (child) {
    const { followPolicyReloads, serveClusterMetrics } = await import('./http/cluster.ts');
    serveClusterMetrics(deps.metrics.registry);
    followPolicyReloads(async () => {
      const before = deps.policy.version;
      try {
        await deps.policy.reload();
        deps.logger.info({ from: before, to: deps.policy.version }, 'policies reloaded (another worker did)');
      } catch (err) {
        deps.logger.error(
          { err },
          'policy reload failed here though another worker made it; old policies stay',
        );
      }
    });
    process.send?.({ writ: 'listening', url: broker.url });
  }
}

/**
 * The primary of `--workers N`: checks the configuration, runs the lifecycle worker (once for the whole
 * group, unless `worker` is false), forks N broker processes that share the port (connections handed out in
 * turn), restarts one that dies, aggregates their metrics for `/metrics`, and on SIGTERM/SIGINT stops them
 * all gracefully (each drains its connections as a single broker does) before it exits.
 */
async function runPrimary(workers: number, withWorker: boolean): Promise<void> {
  if (!Number.isSafeInteger(workers) || workers < 1 || workers > MAX_WORKERS) {
    process.stderr.write(`writ: --workers must be a whole number from 1 to ${MAX_WORKERS}\n`);
    process.exit(2);
  }
  const loaded = loadOrExit();
  if (loaded.mode !== 'production') {
    process.stderr.write(
      'writ: --workers needs production mode (REDIS_URL): in dev mode the store and keys live in one process\n',
    );
    process.exit(2);
  }
  const { config } = loaded;
  const logger = createLogger(config.logLevel).child({ role: 'primary' });
  let closeLifecycle: (() => Promise<void>) | undefined;
  if (withWorker && config.lifecycle.worker) {
    const { runWorker } = await import('./worker.ts');
    try {
      closeLifecycle = await runWorker();
    } catch (e) {
      failStart(e);
    }
  }
  const { clusterMetricsPrimary } = await import('./http/cluster.ts');
  clusterMetricsPrimary();

  let stopping = false;
  let listening = 0;
  let failedExits = 0;
  const restarts: number[] = []; // times of recent restarts, for the back-off
  const timers = new Set<NodeJS.Timeout>();
  const fork = (): Worker => {
    const w = cluster.fork({ [CHILD_ENV]: '1' });
    w.on('message', (m: unknown) => {
      if ((m as { writ?: unknown })?.writ !== 'listening') return;
      listening++;
      if (listening === workers) {
        logger.info({ workers, url: (m as { url?: string }).url }, 'writ listening with worker processes');
      }
    });
    return w;
  };
  cluster.on('exit', (w, code, signal) => {
    if (stopping) {
      if (code !== 0) failedExits++;
      if (Object.keys(cluster.workers ?? {}).length === 0) void finish();
      return;
    }
    if (listening === 0 && restarts.length >= 3) {
      // Not one process has come up yet, and they keep dying: a start-up problem that restarts will not fix.
      logger.error({ pid: w.process.pid, code, signal }, 'broker processes fail to start; giving up');
      failedExits++;
      stop('SIGTERM');
      return;
    }
    // A broker process died on its own: replace it, backing off while they keep dying.
    const now = Date.now();
    while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
    const delay = Math.min(30_000, restarts.length === 0 ? 0 : 250 * 2 ** (restarts.length - 1));
    restarts.push(now);
    logger.error(
      { pid: w.process.pid, code, signal, restartInMs: delay },
      'broker process exited; restarting',
    );
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopping) fork();
    }, delay);
    timers.add(timer);
  });
  for (let i = 0; i < workers; i++) fork();

  let finishing: Promise<void> | undefined;
  const finish = () => {
    finishing ??= (async () => {
      try {
        await closeLifecycle?.();
      } catch (err) {
        logger.warn({ err }, 'error while closing the lifecycle worker');
        failedExits++;
      }
      process.exit(failedExits === 0 ? 0 : 1);
    })();
    return finishing;
  };
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down the worker processes');
    for (const timer of timers) clearTimeout(timer);
    const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    if (alive.length === 0) {
      void finish();
      return;
    }
    for (const w of alive) w.process.kill('SIGTERM');
    // Each process drains within server.shutdownGraceMs; one that hangs past that (and a margin) is killed.
    setTimeout(() => {
      for (const w of Object.values(cluster.workers ?? {})) {
        logger.warn({ pid: w?.process.pid }, 'broker process did not stop in time; killing it');
        w?.process.kill('SIGKILL');
      }
    }, config.server.shutdownGraceMs + 10_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

export function failStart(e: unknown): never {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`writ: failed to start: ${message}\n`);
  process.exit(1);
}

/** `--workers N` as given on a command line: a whole number 1..MAX_WORKERS, else undefined. */
export function parseWorkers(text: string): number | undefined {
  if (!/^\d{1,3}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= 1 && n <= MAX_WORKERS ? n : undefined;
}

// `npm start` runs this file directly: `tsx src/main.ts [--no-worker] [--workers N]`.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const usage = 'usage: npm start -- [--no-worker] [--workers N]\n';
  let workers: number | undefined;
  const unknown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--no-worker') continue;
    if (arg === '--workers' || arg.startsWith('--workers=')) {
      const value = arg === '--workers' ? (args[++i] ?? '') : arg.slice('--workers='.length);
      workers = parseWorkers(value);
      if (workers === undefined) {
        process.stderr.write(`writ: --workers must be a whole number from 1 to ${MAX_WORKERS}\n${usage}`);
        process.exit(2);
      }
    } else unknown.push(arg);
  }
  if (unknown.length > 0) {
    process.stderr.write(`writ: unknown argument(s): ${unknown.join(' ')}\n${usage}`);
    process.exit(2);
  }
  runServer({ worker: !args.includes('--no-worker'), ...(workers === undefined ? {} : { workers }) }).catch(
    failStart,
  );
}
