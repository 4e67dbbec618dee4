// Prometheus metrics, on a registry of the broker's own (no global default registry).
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface Metrics {
  registry: Registry;
  issued: Counter<'type' | 'attestor'>;
  issuanceFailures: Counter<'type' | 'code'>;
  issuanceDuration: Histogram<'type'>;
  httpRequests: Counter<'route' | 'method' | 'status'>;
  legacyIssuance: Counter<'attestor'>;
  rateLimited: Counter<'limit'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'writ_' });
  return {
    registry,
    issued: new Counter({
      name: 'writ_svid_issued_total',
      help: 'Credentials issued, by type and attestor.',
      labelNames: ['type', 'attestor'],
      registers: [registry],
    }),
    issuanceFailures: new Counter({
      name: 'writ_svid_issuance_failures_total',
      help: 'Issuance requests that failed, by error code.',
      labelNames: ['type', 'code'],
      registers: [registry],
    }),
    issuanceDuration: new Histogram({
      name: 'writ_svid_issuance_duration_seconds',
      help: 'Time to attest, decide, sign, verify and record one credential.',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'writ_http_requests_total',
      help: 'HTTP requests, by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    }),
    legacyIssuance: new Counter({
      name: 'writ_legacy_issuance_total',
      help: 'Credentials issued on legacy evidence (static shared secrets), by attestor.',
      labelNames: ['attestor'],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: 'writ_rate_limited_total',
      help: 'Requests refused with 429, by the limit that refused them.',
      labelNames: ['limit'],
      registers: [registry],
    }),
  };
}
