// Admin endpoints: registration entries and join tokens (bearer token; MFA arrives with admin accounts).
import { type RequestHandler, Router } from 'express';
import { createJoinToken } from '../../../attestors/join_token/index.ts';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import type { RegistrationEntryInput } from '../../store/types.ts';
import { adminAuth, parseBody, requireJson } from '../middleware.ts';
import { entrySchema, joinTokenRequestSchema } from '../schemas.ts';

const ENTRY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const entryIdParam: RequestHandler = function entryIdParam(req, res, next) {
  const id = req.params.id;
  if (typeof id !== 'string' || !ENTRY_ID.test(id)) {
    next(new WritError('ERR_NOT_FOUND', 'no such entry'));
    return;
  }
  res.locals.entryId = id;
  next();
};

function createEntry(deps: Deps): RequestHandler {
  return async function createEntryStep(_req, res) {
    const entry = await deps.store.createEntry(res.locals.body as RegistrationEntryInput);
    deps.logger.info({ reqId: res.locals.reqId, entry: entry.id, spiffeId: entry.spiffeId }, 'entry created');
    res.status(201).location(`/v1/admin/entries/${entry.id}`).json(entry);
  };
}

function listEntries(deps: Deps): RequestHandler {
  return async function listEntriesStep(_req, res) {
    const entries = await deps.store.listEntries();
    entries.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
    res.json({ entries });
  };
}

function getEntry(deps: Deps): RequestHandler {
  return async function getEntryStep(_req, res) {
    const entry = await deps.store.getEntry(res.locals.entryId as string);
    if (!entry) throw new WritError('ERR_NOT_FOUND', 'no such entry');
    res.json(entry);
  };
}

function updateEntry(deps: Deps): RequestHandler {
  return async function updateEntryStep(_req, res) {
    const entry = await deps.store.updateEntry(
      res.locals.entryId as string,
      res.locals.body as RegistrationEntryInput,
    );
    if (!entry) throw new WritError('ERR_NOT_FOUND', 'no such entry');
    deps.logger.info({ reqId: res.locals.reqId, entry: entry.id }, 'entry updated');
    res.json(entry);
  };
}

function deleteEntry(deps: Deps): RequestHandler {
  return async function deleteEntryStep(_req, res) {
    const deleted = await deps.store.deleteEntry(res.locals.entryId as string);
    if (!deleted) throw new WritError('ERR_NOT_FOUND', 'no such entry');
    deps.logger.info({ reqId: res.locals.reqId, entry: res.locals.entryId }, 'entry deleted');
    res.status(204).end();
  };
}

function createJoinTokenStep(deps: Deps): RequestHandler {
  return async function createJoinTokenHandler(_req, res) {
    const config = deps.config.attestors.join_token;
    if (!config.enabled) throw new WritError('ERR_ATTESTOR_UNKNOWN', 'the join_token attestor is disabled');
    const body = res.locals.body as { spiffeId: string; ttl?: number; task?: string };
    const created = await createJoinToken({ store: deps.store, clock: deps.clock }, config, body);
    deps.logger.info(
      { reqId: res.locals.reqId, spiffeId: body.spiffeId, task: body.task, expiresAt: created.expiresAt },
      'join token created',
    );
    res.status(201).set('Cache-Control', 'no-store').json(created);
  };
}

export function adminRoutes(deps: Deps): Router {
  const router = Router();
  const td = deps.config.trustDomain;
  router.use('/v1/admin', adminAuth(deps));
  router.post('/v1/admin/entries', requireJson, parseBody(entrySchema(td)), createEntry(deps));
  router.get('/v1/admin/entries', listEntries(deps));
  router.get('/v1/admin/entries/:id', entryIdParam, getEntry(deps));
  router.put(
    '/v1/admin/entries/:id',
    entryIdParam,
    requireJson,
    parseBody(entrySchema(td)),
    updateEntry(deps),
  );
  router.delete('/v1/admin/entries/:id', entryIdParam, deleteEntry(deps));
  router.post(
    '/v1/admin/join-tokens',
    requireJson,
    parseBody(joinTokenRequestSchema(td)),
    createJoinTokenStep(deps),
  );
  return router;
}
