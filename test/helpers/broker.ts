// Starts a real broker on a loopback port for e2e tests (memory store, or Redis with a private key prefix).
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Mode } from '../../src/config/loader.ts';
import { configSchema, type WritConfigInput } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { type Broker, startBroker } from '../../src/server.ts';
import type { Clock } from '../../src/store/types.ts';
import { testRedisUrl, uniquePrefix } from './redis.ts';

export interface TestBroker {
  broker: Broker;
  url: string;
  adminToken: string;
  /** JSON request helper: returns status, parsed body (or text) and headers. */
  request(method: string, path: string, opts?: RequestOptions): Promise<TestResponse>;
  admin(method: string, path: string, body?: unknown): Promise<TestResponse>;
  close(): Promise<void>;
}

export interface RequestOptions {
  body?: unknown;
  /** Sent as-is (no JSON encoding). */
  raw?: string;
  headers?: Record<string, string>;
}

export interface TestResponse {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  body: any;
  text: string;
  headers: Headers;
}

export async function startTestBroker(
  opts: { store?: 'memory' | 'redis'; config?: WritConfigInput; clock?: Clock; logger?: Logger } = {},
): Promise<TestBroker> {
  const adminToken = `test_admin_${randomBytes(24).toString('base64url')}`;
  const storeKind = opts.store ?? 'memory';
  const input: WritConfigInput = {
    logLevel: 'silent',
    ...opts.config,
    // Tests hammer the broker from one loopback address: rate limits apply only where a test configures them.
    rateLimit: opts.config?.rateLimit ?? { enabled: false },
    adminToken,
    // Production mode serves HTTPS by default; these tests speak plain HTTP (test/e2e/https.e2e.test.ts does not).
    server: { host: '127.0.0.1', port: 0, insecureHttp: true, ...opts.config?.server },
    redis:
      storeKind === 'redis'
        ? { url: await testRedisUrl(), prefix: uniquePrefix('broker'), ...opts.config?.redis }
        : { ...opts.config?.redis },
  };
  const config = configSchema.parse(input);
  const mode: Mode = storeKind === 'redis' ? 'production' : 'dev';
  const broker = await startBroker(
    { config, mode, source: undefined },
    {
      logger: opts.logger ?? createLogger('silent'),
      defaultMetrics: false,
      ...(opts.clock ? { clock: opts.clock } : {}),
    },
  );
  const request = async (method: string, path: string, ro: RequestOptions = {}): Promise<TestResponse> => {
    const headers: Record<string, string> = { ...ro.headers };
    let body: string | undefined;
    if (ro.raw !== undefined) body = ro.raw;
    else if (ro.body !== undefined) {
      body = JSON.stringify(ro.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${broker.url}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  };
  return {
    broker,
    url: broker.url,
    adminToken,
    request,
    admin: (method, path, body) =>
      request(method, path, {
        ...(body === undefined ? {} : { body }),
        headers: { authorization: `Bearer ${adminToken}` },
      }),
    close: () => broker.close(),
  };
}
