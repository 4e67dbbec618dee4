// Entry point of `npm start` / `writ server`: load config, start the broker, print the dev banner, shut down cleanly.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { createJoinToken } from '../attestors/join_token/index.ts';
import { ConfigError, loadConfig } from './config/loader.ts';
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

export async function runServer(opts: { worker?: boolean } = {}): Promise<void> {
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig();
    if (opts.worker === false) loaded.config.lifecycle.worker = false;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`writ: ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }

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
}

export function failStart(e: unknown): never {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`writ: failed to start: ${message}\n`);
  process.exit(1);
}

// `npm start` runs this file directly: `tsx src/main.ts [--no-worker]`.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--no-worker');
  if (unknown.length > 0) {
    process.stderr.write(
      `writ: unknown argument(s): ${unknown.join(' ')}\nusage: npm start -- [--no-worker]\n`,
    );
    process.exit(2);
  }
  runServer({ worker: !args.includes('--no-worker') }).catch(failStart);
}
