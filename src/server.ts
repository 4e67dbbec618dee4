// The composition root's body: config -> store -> keys -> attestors -> app -> listen; close in reverse.
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Approvals } from './admin/approvals.ts';
import { type AdminAccounts, MemoryAdminAccounts, RedisAdminAccounts } from './admin/index.ts';
import { createRequestListener } from './app.ts';
import { AttestorFacade } from './attestation/facade.ts';
import { createAttestors } from './attestation/registry.ts';
import { type AuditLog, MemoryAuditLog, RedisAuditLog } from './audit/index.ts';
import { issuerOf, type LoadedConfig } from './config/loader.ts';
import type { Deps } from './deps.ts';
import { sha256 } from './http/middleware.ts';
import { type BrokerServer, chooseTransport, createBrokerServer, schemeOf, startTls } from './http/tls.ts';
import { RotationTimer } from './keys/rotation.ts';
import { loadKeyManager } from './keys/signing-keys.ts';
import { type CaAuthorities, loadCertificateAuthority } from './keys/x509/ca-loader.ts';
import { clientTrustAnchors } from './keys/x509/client-trust.ts';
import { BullScheduler, type LifecycleWorker, startLifecycleWorker } from './lifecycle/bullmq.ts';
import { CrlPublisher } from './lifecycle/crl.ts';
import { Lifecycle } from './lifecycle/lifecycle.service.ts';
import { MemoryScheduler } from './lifecycle/memory.scheduler.ts';
import { RevocationHub } from './lifecycle/revocation-feed.ts';
import type { TaskScheduler } from './lifecycle/scheduler.ts';
import { LegacyIssuanceLog } from './observability/legacy-log.ts';
import { createLogger } from './observability/logger.ts';
import { createMetrics } from './observability/metrics.ts';
import { DEFAULT_POLICY_DIR, PolicyEngine } from './policy/index.ts';
import { MemoryStore } from './store/memory/memory.store.ts';
import { RedisStore } from './store/redis/redis.store.ts';
import { type Clock, type CredentialStore, systemClock } from './store/types.ts';

export interface Broker {
  url: string;
  deps: Deps;
  server: BrokerServer;
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  clock?: Clock;
  /** The admin token to use when none is configured (dev mode generates one). */
  adminToken?: string;
  defaultMetrics?: boolean;
}

/**
 * A Redis connection that fails fast instead of queueing, so that requests fail closed with 503. Commands
 * issued in the same event-loop tick (concurrent issuances) leave in one write (auto-pipelining); while the
 * connection is down they still fail at once, offline queue or not.
 */
export function createRedis(url: string, commandTimeout: number): Redis {
  return new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    // A command whose reply was lost with the connection fails (503) instead of running a second time: a
    // script that ran (an audit batch, a token spent) must not be applied twice.
    autoResendUnfulfilledCommands: false,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    commandTimeout,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  });
}

export async function startBroker(loaded: LoadedConfig, opts: StartOptions = {}): Promise<Broker> {
  const { config, mode } = loaded;
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  const adminToken = config.adminToken ?? opts.adminToken;
  if (!adminToken) throw new Error('an admin token is required');

  const closers: Array<() => Promise<void>> = [];
  let closing: Promise<void> | undefined;
  // Reverse order of start; idempotent (a second call waits for the first).
  const closeAll = () => {
    closing ??= (async () => {
      for (const close of [...closers].reverse()) {
        try {
          await close();
        } catch (err) {
          logger.warn({ err }, 'error while closing');
        }
      }
    })();
    return closing;
  };

  try {
    let store: CredentialStore;
    let redisClient: Redis | undefined;
    if (mode === 'production' && config.redis.url) {
      const redis = createRedis(config.redis.url, config.redis.commandTimeoutMs);
      redis.on('error', (err: Error) =>
        logger.warn({ err: { message: err.message } }, 'redis connection error'),
      );
      closers.push(async () => {
        redis.disconnect();
      });
      await redis.connect();
      redisClient = redis;
      store = new RedisStore({
        redis,
        prefix: config.redis.prefix,
        clock,
        retentionSeconds: config.credentials.retention,
      });
    } else {
      store = new MemoryStore({ clock, retentionSeconds: config.credentials.retention });
    }
    closers.push(() => store.close());

    // A bad policy stops the broker before it listens, with every problem listed (PolicyError's message).
    const policy = await PolicyEngine.load({ dir: config.policy.dir ?? DEFAULT_POLICY_DIR });
    for (const warning of policy.policySet.warnings) logger.warn({ warning }, 'policy warning');
    logger.info({ dir: config.policy.dir ?? DEFAULT_POLICY_DIR, version: policy.version }, 'policies loaded');

    const keys = await loadKeyManager({ config, store, clock, logger });
    closers.push(async () => keys.close());

    const jobDeps = { store, clock, logger, config };
    let scheduler: TaskScheduler;
    if (redisClient && config.redis.url) {
      // BullMQ gets a connection of its own (same fail-fast options): it defines ~40 Lua commands on the
      // client it is given, and ioredis copies every defined command into each pipeline it builds, which with
      // auto-pipelining is one per event-loop tick of issuance traffic.
      const bullRedis = redisClient.duplicate();
      bullRedis.on('error', (err: Error) =>
        logger.warn({ err: { message: err.message } }, 'redis connection error (lifecycle queue)'),
      );
      closers.push(async () => {
        bullRedis.disconnect();
      });
      await bullRedis.connect();
      scheduler = new BullScheduler({
        connection: bullRedis,
        prefix: config.redis.prefix,
        clock,
        attempts: config.lifecycle.jobAttempts,
      });
    } else {
      scheduler = new MemoryScheduler(jobDeps);
    }
    closers.push(() => scheduler.close());
    if (scheduler.kind === 'bullmq' && config.lifecycle.worker && config.redis.url) {
      const worker: LifecycleWorker = await startLifecycleWorker(jobDeps, {
        redisUrl: config.redis.url,
        prefix: config.redis.prefix,
        rotation: config,
      });
      closers.push(() => worker.close());
    }
    let accounts: AdminAccounts;
    let audit: AuditLog;
    if (redisClient) {
      const common = {
        redis: redisClient,
        prefix: config.redis.prefix,
        clock,
        commandTimeoutMs: config.redis.commandTimeoutMs,
      };
      accounts = new RedisAdminAccounts({
        ...common,
        maxOtpFailures: config.admin.maxOtpFailures,
        lockoutSeconds: config.admin.lockoutSeconds,
      });
      audit = new RedisAuditLog({
        ...common,
        ...(config.audit.maxLen ? { maxLen: config.audit.maxLen } : {}),
      });
    } else {
      accounts = new MemoryAdminAccounts({
        clock,
        maxOtpFailures: config.admin.maxOtpFailures,
        lockoutSeconds: config.admin.lockoutSeconds,
      });
      audit = new MemoryAuditLog({ clock, ...(config.audit.maxLen ? { maxLen: config.audit.maxLen } : {}) });
    }
    const lifecycle = new Lifecycle({ store, scheduler, clock, logger, audit });
    const feed = new RevocationHub({ store, logger });
    feed.start();
    closers.push(() => feed.close());

    // Production serves HTTPS unless server.insecureHttp says a TLS-terminating proxy is in front.
    const transport = chooseTransport(config, mode);
    const server = createBrokerServer(transport, config.server.clientCertificates);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.server.port, config.server.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    let casThreads: CaAuthorities | undefined;
    // Pushed before the server's closer, so run after it: X.509-SVID issuances in flight finish first.
    closers.push(async () => casThreads?.endThreads());
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          feed.endStreams();
          const timer = setTimeout(() => server.closeAllConnections(), config.server.shutdownGraceMs);
          server.close(() => {
            clearTimeout(timer);
            resolve();
          });
          server.closeIdleConnections();
        }),
    );
    const port = (server.address() as AddressInfo).port;
    const issuer = issuerOf(config, port, schemeOf(transport));
    // The CA's CRL URL defaults to the issuer's, known once the port is bound; no handler runs before this.
    const cas = await loadCertificateAuthority({ config, mode, store, issuer, clock, logger });
    casThreads = cas;
    closers.push(async () => cas.close());
    const tls = startTls(server, transport, {
      config,
      // Read at each renewal: after a CA rotation the server certificate comes from the new CA.
      get ca() {
        return cas.current();
      },
      issuer,
      clock,
      logger,
      // Client certificates (mTLS renewal) chain to any root of the trust domain, also after a rotation.
      clientTrust: () => clientTrustAnchors(cas),
    });
    if (tls) {
      closers.push(async () => tls.close());
      // A rotation (here, or seen in the store) moves the server certificate to the new CA at once, and
      // the client trust to the new set of roots.
      const unsubscribe = cas.ring.onChange(() => tls.caChanged());
      closers.push(async () => unsubscribe());
    }
    const crl = new CrlPublisher({ store, ca: cas, clock, logger, config, feed });
    crl.start();
    closers.push(() => crl.close());
    const metrics = createMetrics({ defaultMetrics: opts.defaultMetrics ?? true });
    const legacyLog = new LegacyIssuanceLog(logger);
    closers.push(async () => legacyLog.close());
    const attestorHost = { store, clock, logger, trustDomain: config.trustDomain, issuer };
    const attestors = new AttestorFacade({
      attestors: createAttestors(config, attestorHost),
      timeoutMs: config.attestors.timeoutMs,
      trustDomain: config.trustDomain,
      logger,
    });
    // Rotation: the worker's repeatable job in production; a timer in dev (and where no worker runs here,
    // the in-process check is harmless: rotations are compare-and-set on the stored rings).
    if (scheduler.kind === 'memory') {
      const timer = new RotationTimer({ store, clock, logger, config }, [keys.ring, cas.ring]);
      closers.push(() => timer.close());
    }
    const deps: Deps = {
      config,
      mode,
      issuer,
      store,
      keys,
      get ca() {
        return cas.current();
      },
      cas,
      crl,
      attestors,
      lifecycle,
      policy,
      approvals: new Approvals({ store, clock, ttlSeconds: config.policy.approvalTtl }),
      accounts,
      audit,
      feed,
      logger,
      legacyLog,
      metrics,
      clock,
      adminTokenHash: sha256(adminToken),
    };
    server.on('request', createRequestListener(deps));
    const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
    const url = `${schemeOf(transport)}://${host}:${port}`;
    logger.info({ url, mode, issuer, trustDomain: config.trustDomain, store: store.kind }, 'writ listening');
    return { url, deps, server, close: closeAll };
  } catch (e) {
    await closeAll();
    throw e;
  }
}
