// Operations endpoints: liveness, readiness and Prometheus metrics.
import { type RequestHandler, Router } from 'express';
import type { Deps } from '../../deps.ts';

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
    res.set('Content-Type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  };
}

export function opsRoutes(deps: Deps): Router {
  const router = Router();
  router.get('/healthz', healthz);
  router.get('/readyz', readyz(deps));
  router.get('/metrics', metrics(deps));
  return router;
}
