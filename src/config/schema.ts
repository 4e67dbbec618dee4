// The one configuration schema: every option, its default and its documentation live here.
import { isIP } from 'node:net';
import { z } from 'zod';
import { OPTIONAL_ATTESTOR_CONFIGS } from '../../attestors/configs.ts';
import { joinTokenConfigSchema } from '../../attestors/join_token/config.ts';
import { trustDomainSchema } from '../spiffe/spiffe-id.ts';

const seconds = (max: number) => z.number().int().min(1).max(max);
const DAY = 86_400;
const DNS_NAME = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$/;

export const JWT_ALGORITHMS = ['ES256', 'ES384', 'RS256', 'PS256'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

const serverSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1').describe('Address to listen on (env HOST).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(8080)
      .describe('TCP port (env PORT); 0 picks a free port.'),
    bodyLimit: z
      .number()
      .int()
      .min(1024)
      .max(10 * 1024 * 1024)
      .default(64 * 1024)
      .describe('Largest request body accepted, in bytes; larger bodies get 413.'),
    trustProxy: z
      .union([z.boolean(), z.string().min(1), z.number().int().min(0).max(64)])
      .default(false)
      .describe(
        'Express trust-proxy setting (env WRIT_TRUST_PROXY): which forwarded addresses to believe for the ' +
          "source IP that policy and rate limits see. false trusts none (the socket's address).",
      ),
    shutdownGraceMs: z
      .number()
      .int()
      .min(0)
      .max(120_000)
      .default(10_000)
      .describe('How long in-flight requests may finish after SIGTERM before the process exits.'),
    tls: z
      .strictObject({
        certFile: z
          .string()
          .min(1)
          .describe('PEM file of the server certificate, followed by its intermediates.'),
        keyFile: z.string().min(1).describe('PEM file of the server private key (unencrypted).'),
      })
      .optional()
      .describe(
        'Serve HTTPS with these files, reloaded when they change. Unset: production mode issues the ' +
          "broker's own server certificate from its CA for tlsNames (clients trust /v1/bundle.pem).",
      ),
    tlsNames: z
      .array(
        z.string().refine((v) => isIP(v) !== 0 || DNS_NAME.test(v), 'must be a DNS name or an IP address'),
      )
      .min(1)
      .max(32)
      .default(['localhost', '127.0.0.1', '::1'])
      .describe('DNS names and IP addresses of the server certificate the broker issues itself.'),
    tlsCertTtl: z
      .number()
      .int()
      .min(600)
      .max(30 * DAY)
      .default(DAY)
      .describe('Lifetime of that certificate, seconds; it is renewed when a third of it remains.'),
    insecureHttp: z
      .boolean()
      .default(false)
      .describe(
        'Serve plain HTTP in production mode (env WRIT_INSECURE_HTTP=true): only behind a TLS-terminating ' +
          'proxy. Dev mode serves plain HTTP unless tls is set.',
      ),
    clientCertificates: z
      .enum(['optional', 'off'])
      .default('optional')
      .describe(
        'HTTPS only. optional: ask every client for a certificate (never require one), trusting the roots ' +
          "of the broker's X.509 CA, so that a workload can renew its X.509-SVID over mutual TLS (POST " +
          '/v1/svid/x509/renew). off: ask for none; renewal answers ERR_MTLS_UNAVAILABLE.',
      ),
  })
  .describe('HTTP server.');

const redisSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
      .optional()
      .describe('Redis URL (env REDIS_URL). Without it the broker runs in dev mode with an in-memory store.'),
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'letters, digits and : _ . - only')
      .default('writ:')
      .describe('Prefix of every Redis key the broker writes.'),
    commandTimeoutMs: z
      .number()
      .int()
      .min(50)
      .max(60_000)
      .default(2_000)
      .describe('A Redis command that takes longer fails, and the request fails closed with 503.'),
  })
  .describe('State store.');

const x509KeysSchema = z
  .strictObject({
    caCertFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM file of the X.509 CA certificate (typically an intermediate under your own root), with ' +
          'caKeyFile. Unset: dev mode generates a root; production generates one once and stores it in ' +
          'Redis so that every replica issues under the same CA.',
      ),
    caKeyFile: z
      .string()
      .min(1)
      .optional()
      .describe('PEM file of the CA private key (unencrypted PKCS#8, SEC1 or PKCS#1), with caCertFile.'),
    caChainFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM file of the certificates above the CA, its issuer first, ending with the self-signed root; ' +
          'served with every X.509-SVID, and the root is published in the bundle.',
      ),
    caCurve: z.enum(['P-256', 'P-384']).default('P-256').describe('Curve of a generated CA key.'),
    caTtl: seconds(20 * 365 * DAY)
      .default(365 * DAY)
      .describe('Lifetime of a generated CA, seconds; no certificate outlives its CA.'),
    crlUrl: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe(
        'Base URL of the CRLs. Each CA publishes its CRL at <crlUrl>/<CA key id>, the distribution point ' +
          "written into every certificate it issues; <crlUrl> itself serves the current CA's. " +
          'Default: <issuer>/v1/crl.',
      ),
    crlNextUpdate: z
      .number()
      .int()
      .min(60)
      .max(7 * DAY)
      .default(3600)
      .describe("Seconds from a CRL's thisUpdate to its nextUpdate (relying parties refetch by then)."),
  })
  .superRefine((c, ctx) => {
    if ((c.caCertFile === undefined) !== (c.caKeyFile === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.caCertFile === undefined ? 'caCertFile' : 'caKeyFile'],
        message: 'caCertFile and caKeyFile go together',
      });
    }
    if (c.caChainFile !== undefined && c.caCertFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['caChainFile'], message: 'needs caCertFile and caKeyFile' });
    }
  })
  .describe("The X.509 CA that signs X.509-SVIDs, CRLs and the broker's own server certificate.");

const rotationSchema = z
  .strictObject({
    jwtInterval: z
      .number()
      .int()
      .min(0)
      .max(365 * DAY)
      .default(7 * DAY)
      .describe(
        'Seconds a JWT signing key signs before the next key replaces it; 0 rotates only on demand ' +
          '(POST /v1/admin/keys/rotate). Not for keys.jwtPrivateKeyFile.',
      ),
    caInterval: z
      .number()
      .int()
      .min(0)
      .max(10 * 365 * DAY)
      .default(30 * DAY)
      .describe(
        'Seconds a generated CA issues before the next CA replaces it; 0 rotates only on demand. A CA ' +
          'is also rotated when less than twice credentials.maxTtl of its life remains. Not for a CA ' +
          'given as files.',
      ),
    checkInterval: seconds(DAY)
      .default(60)
      .describe(
        'How often rotations are checked (a BullMQ repeatable job in production, a timer in dev), seconds.',
      ),
    refreshInterval: seconds(3600)
      .default(10)
      .describe(
        'How often a replica re-reads the key rings from Redis (another replica or the worker may have ' +
          'rotated), seconds. Retired keys stay published this much longer.',
      ),
  })
  .describe(
    'Rotation of the JWT signing keys and the CA: the next key is published before it signs, and a ' +
      'retired key stays published until everything it signed has expired.',
  );

const keysSchema = z
  .strictObject({
    jwtAlgorithm: z.enum(JWT_ALGORITHMS).default('ES256').describe('Signature algorithm of JWT-SVIDs.'),
    jwtPrivateKeyFile: z
      .string()
      .optional()
      .describe(
        'PEM file (PKCS#8) of the JWT signing key. Unset: dev mode generates one; production generates ' +
          'one once and stores it in Redis so that every replica signs with the same key.',
      ),
    bundleRefreshHint: seconds(DAY)
      .default(300)
      .describe('spiffe_refresh_hint of the trust bundle, seconds.'),
    x509: x509KeysSchema.prefault({}),
    rotation: rotationSchema.prefault({}),
  })
  .describe('Signing keys.');

const credentialsSchema = z
  .strictObject({
    jwtDefaultTtl: seconds(DAY)
      .default(300)
      .describe('TTL of a JWT-SVID when the request names none, seconds.'),
    x509DefaultTtl: seconds(DAY).default(900).describe('TTL of an X.509-SVID when the request names none.'),
    maxTtl: seconds(DAY)
      .default(DAY)
      .describe('Hard cap on any credential TTL, seconds (entries and policy may lower it).'),
    taskDeadline: seconds(7 * DAY)
      .default(3600)
      .describe('Deadline of a new task, seconds from its start.'),
    maxTaskDeadline: seconds(7 * DAY)
      .default(DAY)
      .describe('Cap on any task deadline, seconds.'),
    retention: seconds(30 * DAY)
      .default(3600)
      .describe('How long records stay in the store after their credential or task has expired, seconds.'),
    backdate: z
      .number()
      .int()
      .min(0)
      .max(300)
      .default(5)
      .describe('Clock-skew allowance, seconds: JWT-SVIDs carry nbf this long before iat.'),
  })
  .describe('Credential lifetimes.');

const lifecycleSchema = z
  .strictObject({
    worker: z
      .boolean()
      .default(true)
      .describe(
        'Run the lifecycle worker in the broker process (`--no-worker` turns it off; `writ worker` runs it alone).',
      ),
    fanoutBatchSize: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(500)
      .describe('Credentials revoked per step when a task ends (one atomic Redis script per step).'),
    fanoutPauseMs: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .default(0)
      .describe('Pause between fan-out steps, to spare Redis when huge tasks end.'),
    deadlineIntervalMs: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(1_000)
      .describe(
        'How often the worker ends the tasks whose deadline has passed (read from the deadline index): a ' +
          'task ends at most about this long after its deadline.',
      ),
    sweepIntervalMs: z
      .number()
      .int()
      .min(100)
      .max(3_600_000)
      .default(30_000)
      .describe(
        'How often the sweeper reconciles tasks a lost job left behind and trims the revocation feed.',
      ),
    jobLockMs: z
      .number()
      .int()
      .min(500)
      .max(600_000)
      .default(30_000)
      .describe('BullMQ lock of a running job; a job whose worker died is retried after this long.'),
    jobAttempts: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(10)
      .describe('Attempts of a lifecycle job (exponential backoff).'),
  })
  .describe('Task lifecycle: deadline jobs, fan-out of revocations, the sweeper.');

const revocationFeedSchema = z
  .strictObject({
    heartbeatMs: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(5_000)
      .describe(
        'Heartbeat interval of the SSE revocation stream; relying parties use it to detect a stale feed.',
      ),
    maxSubscribers: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(1_000)
      .describe('Most concurrent SSE subscribers per broker process; more get 503 ERR_FEED_BUSY.'),
    maxSubscribersPerAddress: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(20)
      .describe('Most concurrent SSE subscribers from one source address; more get 429.'),
  })
  .describe('The public revocation feed.');

const rateLimitSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe('Limit attestation failures, admin authentication failures and challenge requests.'),
    windowSeconds: seconds(3600)
      .default(60)
      .describe(
        'Fixed counting window, seconds; a limit reached blocks until the window ends (Retry-After).',
      ),
    attestationFailuresPerAddress: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(20)
      .describe(
        'Attestation failures one source address (IPv6: one /64) may have per attestor per window; then ' +
          'its requests for that attestor get 429, valid evidence included.',
      ),
    attestationFailuresPerAttestor: z
      .number()
      .int()
      .min(0)
      .max(100_000_000)
      .default(1000)
      .describe(
        'Attestation failures per attestor per window from all addresses together; then the attestor ' +
          'answers 429 to everyone until the window ends. 0 turns this budget off.',
      ),
    adminAuthFailuresPerAddress: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10)
      .describe('Failed admin authentications per source address per window; then admin requests get 429.'),
    challengesPerAddress: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(60)
      .describe('Attestation challenges (nonces) one source address may request per window.'),
  })
  .describe('Rate limits, counted in the store and so shared by every replica.');

const policySchema = z
  .strictObject({
    dir: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Directory of *.cedar policies (env WRIT_POLICY_DIR). Unset: the shipped config/policies, whose ' +
          'default.cedar permits issuance within what registration entries allow. A configured directory ' +
          'replaces it: whatever it does not permit is denied.',
      ),
    approvalTtl: seconds(DAY).default(900).describe('How long an approval request stays open, seconds.'),
  })
  .describe('Request-time policy (Cedar).');

const adminSchema = z
  .strictObject({
    maxOtpFailures: z
      .number()
      .int()
      .min(1)
      .max(100)
      .default(5)
      .describe('Consecutive TOTP failures after which an admin account is locked.'),
    lockoutSeconds: seconds(DAY)
      .default(900)
      .describe('How long a locked admin account stays locked, seconds.'),
  })
  .describe('Admin accounts and MFA.');

const auditSchema = z
  .strictObject({
    maxLen: z
      .number()
      .int()
      .min(1000)
      .optional()
      .describe(
        'Trim the audit stream to this many records; unset keeps the whole trail (export before trimming).',
      ),
  })
  .describe('The hash-chained audit trail.');

const attestorsSchema = z
  .strictObject({
    join_token: joinTokenConfigSchema.prefault({}),
    ...OPTIONAL_ATTESTOR_CONFIGS,
    timeoutMs: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(5_000)
      .describe('An attestor that takes longer fails with 503.'),
  })
  .describe('Attestor plugins.');

export const configSchema = z
  .strictObject({
    trustDomain: trustDomainSchema
      .default('writ.local')
      .describe('SPIFFE trust domain (env WRIT_TRUST_DOMAIN); every SPIFFE ID issued belongs to it.'),
    issuer: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe('`iss` of JWT-SVIDs and the OIDC issuer URL (env WRIT_ISSUER). Default: http://HOST:PORT.'),
    adminToken: z
      .string()
      .min(32, 'must be at least 32 characters')
      .optional()
      .describe('Bootstrap admin bearer token (env WRIT_ADMIN_TOKEN). Dev mode generates one when unset.'),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('Log level (env LOG_LEVEL).'),
    server: serverSchema.prefault({}),
    redis: redisSchema.prefault({}),
    keys: keysSchema.prefault({}),
    credentials: credentialsSchema.prefault({}),
    attestors: attestorsSchema.prefault({}),
    lifecycle: lifecycleSchema.prefault({}),
    revocationFeed: revocationFeedSchema.prefault({}),
    rateLimit: rateLimitSchema.prefault({}),
    policy: policySchema.prefault({}),
    admin: adminSchema.prefault({}),
    audit: auditSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.credentials.jwtDefaultTtl > c.credentials.maxTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['credentials', 'jwtDefaultTtl'],
        message: 'exceeds credentials.maxTtl',
      });
    }
    if (c.credentials.x509DefaultTtl > c.credentials.maxTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['credentials', 'x509DefaultTtl'],
        message: 'exceeds credentials.maxTtl',
      });
    }
    if (c.credentials.taskDeadline > c.credentials.maxTaskDeadline) {
      ctx.addIssue({
        code: 'custom',
        path: ['credentials', 'taskDeadline'],
        message: 'exceeds credentials.maxTaskDeadline',
      });
    }
    const { rotation, bundleRefreshHint } = c.keys;
    // The next key must be in every relying party's cached bundle before it signs.
    for (const field of ['jwtInterval', 'caInterval'] as const) {
      if (rotation[field] > 0 && rotation[field] <= bundleRefreshHint + rotation.refreshInterval) {
        ctx.addIssue({
          code: 'custom',
          path: ['keys', 'rotation', field],
          message: 'must exceed keys.bundleRefreshHint + keys.rotation.refreshInterval (or be 0)',
        });
      }
    }
    // A ring holds at most 64 retired keys, each kept while its credentials may live (key-ring.ts,
    // rotation.ts retainSeconds: maxTtl + backdate + refreshInterval + 60 s).
    const retain = c.credentials.maxTtl + c.credentials.backdate + rotation.refreshInterval + 60;
    for (const field of ['jwtInterval', 'caInterval'] as const) {
      if (rotation[field] > 0 && Math.ceil(retain / rotation[field]) + 1 > 64) {
        ctx.addIssue({
          code: 'custom',
          path: ['keys', 'rotation', field],
          message: `too short: at most 63 retired keys may be kept for ${retain} s (credentials.maxTtl and margins)`,
        });
      }
    }
    if (rotation.caInterval > 0 && c.keys.x509.caTtl < 2 * rotation.caInterval + 2 * c.credentials.maxTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['keys', 'x509', 'caTtl'],
        message:
          'a CA is next for one caInterval, then current for another: caTtl must be at least 2 x (keys.rotation.caInterval + credentials.maxTtl)',
      });
    }
    if (c.attestors.join_token.defaultTtl > c.attestors.join_token.maxTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['attestors', 'join_token', 'defaultTtl'],
        message: 'exceeds maxTtl',
      });
    }
  });

export type WritConfigInput = z.input<typeof configSchema>;
export type WritConfig = z.output<typeof configSchema>;
