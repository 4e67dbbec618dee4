// createApp(deps): the express application. It never listens; src/server.ts does.
import express, { type Express } from 'express';
import type { Deps } from './deps.ts';
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
import { workloadRoutes } from './http/routes/workload.routes.ts';
import { x509Routes } from './http/routes/x509.routes.ts';
import { x509RenewRoutes } from './http/routes/x509-renew.routes.ts';

export function createApp(deps: Deps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.server.trustProxy);
  app.set('query parser', 'simple');
  app.use(requestLog(deps));
  // Before the JSON parser: webhook signatures cover the raw body bytes.
  app.use(webhooksRoutes(deps));
  app.use(express.json({ limit: deps.config.server.bodyLimit, strict: true, type: isJsonBody }));
  app.use(opsRoutes(deps));
  app.use(relyingPartyRoutes(deps));
  app.use(workloadRoutes(deps));
  app.use(x509Routes(deps));
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
