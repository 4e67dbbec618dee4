// createApp(deps): the express application. It never listens; src/server.ts does.
import type { RequestListener } from 'node:http';
import express, { type Express, type RequestHandler } from 'express';
import type { Deps } from './deps.ts';
import { issuanceLane } from './http/issuance-lane.ts';
import { errorHandler, isJsonBody, notFound, requestLog } from './http/middleware.ts';
import { adminRoutes } from './http/routes/admin.routes.ts';
import { attestRoutes } from './http/routes/attest.routes.ts';
import { authorizeRoutes } from './http/routes/authorize.routes.ts';
import { keysRoutes } from './http/routes/keys.routes.ts';
import { lifecycleRoutes } from './http/routes/lifecycle.routes.ts';
import { oauthRoutes } from './http/routes/oauth.routes.ts';
import { opsRoutes } from './http/routes/ops.routes.ts';
import { relyingPartyRoutes } from './http/routes/relying-party.routes.ts';
import { webhooksRoutes } from './http/routes/webhooks.routes.ts';
import { jwtSvidSteps, workloadRoutes } from './http/routes/workload.routes.ts';
import { x509Routes, x509SvidSteps } from './http/routes/x509.routes.ts';
import { x509RenewRoutes } from './http/routes/x509-renew.routes.ts';

/**
 * The broker's request listener: the express app behind the issuance lane, which serves the common form of the
 * two issuance requests with the same steps and without express's per-request cost (src/http/issuance-lane.ts).
 */
export function createRequestListener(deps: Deps): RequestListener {
  const log = requestLog(deps);
  const lanes = new Map<string, RequestHandler[]>([
    ['/v1/svid/jwt', jwtSvidSteps(deps)],
    ['/v1/svid/x509', x509SvidSteps(deps)],
  ]);
  return issuanceLane(deps, createApp(deps, { requestLog: log, lanes }), log, lanes);
}

/** The express app alone (every route); `shared` hands it the steps the issuance lane also runs. */
export function createApp(
  deps: Deps,
  shared: { requestLog: RequestHandler; lanes: ReadonlyMap<string, RequestHandler[]> } = {
    requestLog: requestLog(deps),
    lanes: new Map(),
  },
): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.server.trustProxy);
  app.set('query parser', 'simple');
  const json = express.json({ limit: deps.config.server.bodyLimit, strict: true, type: isJsonBody });
  app.use(shared.requestLog);
  // The two issuance routes first, each with the JSON parser in its own route: the busiest requests skip the
  // other routers' layers. No router below handles their paths.
  app.use(workloadRoutes(deps, json, shared.lanes.get('/v1/svid/jwt')));
  app.use(x509Routes(deps, json, shared.lanes.get('/v1/svid/x509')));
  // Before the JSON parser: webhook signatures cover the raw body bytes.
  app.use(webhooksRoutes(deps));
  app.use(json);
  app.use(opsRoutes(deps));
  app.use(relyingPartyRoutes(deps));
  app.use(x509RenewRoutes(deps));
  app.use(attestRoutes(deps));
  app.use(lifecycleRoutes(deps));
  app.use(authorizeRoutes(deps));
  app.use(oauthRoutes(deps));
  // Before adminRoutes, whose admin authentication covers every other /v1/admin path.
  app.use(keysRoutes(deps));
  app.use(adminRoutes(deps));
  app.use(notFound);
  app.use(errorHandler(deps));
  return app;
}
