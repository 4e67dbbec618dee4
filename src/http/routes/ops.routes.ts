// Operations endpoints: liveness, readiness and Prometheus metrics.
import { type RequestHandler, Router } from 'express';
import type { Deps } from '../../deps.ts';
import { clusterMetrics } from '../cluster.ts';

const healthz: RequestHandler = function healthz(_req, res) {
  res.set('Cache-Control', 'no-store').json({ status: 'ok' });
};

function readyz(deps: Deps): RequestHandler {
  return async function readyzStep(_req, res) {
    const checks: Record<string, 'ok' | 'failing'> = { keys: 'ok', store: 'ok' };
    try {
      await deps.store.ping();
    } catch {
      checks.store = 'failing';
    }
    const ready = Object.values(checks).every((c) => c === 'ok');
    res
      .status(ready ? 200 : 503)
      .set('Cache-Control', 'no-store')
      .json({ status: ready ? 'ready' : 'not_ready', checks });
  };
}

function metrics(deps: Deps): RequestHandler {
  return async function metricsStep(_req, res) {
    // Under `writ server --workers N`, the sum over every broker process (see src/http/cluster.ts).
    const text = (await clusterMetrics()) ?? (await deps.metrics.registry.metrics());
    res.set('Content-Type', deps.metrics.registry.contentType).send(text);
  };
}

export function opsRoutes(deps: Deps): Router {
  const router = Router();
  router.get('/healthz', healthz);
  router.get('/readyz', readyz(deps));
  router.get('/metrics', metrics(deps));
  return router;
}
