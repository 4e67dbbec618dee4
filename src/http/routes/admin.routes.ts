// Admin endpoints: registration entries and join tokens (bearer token; MFA arrives with admin accounts).
import { type RequestHandler, type Response, Router } from 'express';
import { z } from 'zod';
import { createJoinToken } from '../../../attestors/join_token/index.ts';
import { ADMIN_NAME_PATTERN } from '../../admin/accounts.ts';
import { getAdmin } from '../../admin/middleware.ts';
import { hashSecret } from '../../audit/audit-log.ts';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import { type BulkSelector, REASON_ADMIN, REASON_PATTERN } from '../../lifecycle/lifecycle.service.ts';
import { isTaskId, taskIdSchema } from '../../lifecycle/task-id.ts';
import { DEFAULT_POLICY_DIR, isPolicyError } from '../../policy/index.ts';
import { isTrustDomainId, spiffeIdSchema } from '../../spiffe/spiffe-id.ts';
import { credentialStatus } from '../../store/status.ts';
import {
  type CredentialView,
  type RegistrationEntryInput,
  seconds,
  type TaskRecord,
} from '../../store/types.ts';
import { announcePolicyReload } from '../cluster.ts';
import { adminAuth, adminOtp, invalidRequest, parseBody, requireJson } from '../middleware.ts';
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
    const input = res.locals.body as RegistrationEntryInput;
    // Audited before it takes effect: a change the trail cannot record does not happen.
    await deps.audit.append({
      type: 'admin.entry.created',
      actor: actorOf(res),
      subject: input.spiffeId,
      details: { spiffeId: input.spiffeId, selectors: input.selectors },
    });
    const entry = await deps.store.createEntry(input);
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
    const input = res.locals.body as RegistrationEntryInput;
    await deps.audit.append({
      type: 'admin.entry.updated',
      actor: actorOf(res),
      subject: `entry:${res.locals.entryId}`,
      details: { spiffeId: input.spiffeId, selectors: input.selectors },
    });
    const entry = await deps.store.updateEntry(res.locals.entryId as string, input);
    if (!entry) throw new WritError('ERR_NOT_FOUND', 'no such entry');
    deps.logger.info({ reqId: res.locals.reqId, entry: entry.id }, 'entry updated');
    res.json(entry);
  };
}

function deleteEntry(deps: Deps): RequestHandler {
  return async function deleteEntryStep(_req, res) {
    await deps.audit.append({
      type: 'admin.entry.deleted',
      actor: actorOf(res),
      subject: `entry:${res.locals.entryId}`,
    });
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
    await deps.audit.append({
      type: 'admin.join_token.created',
      actor: actorOf(res),
      subject: body.spiffeId,
      details: { token: hashSecret(created.token), expiresAt: created.expiresAt, task: body.task ?? null },
    });
    deps.logger.info(
      { reqId: res.locals.reqId, spiffeId: body.spiffeId, task: body.task, expiresAt: created.expiresAt },
      'join token created',
    );
    res.status(201).set('Cache-Control', 'no-store').json(created);
  };
}

const reasonSchema = z
  .string()
  .regex(REASON_PATTERN, 'a reason is a lowercase code like key_compromise')
  .optional();
const revokeBodySchema = z.strictObject({ reason: reasonSchema });
const bulkBodySchema = z
  .strictObject({
    task: taskIdSchema.optional(),
    spiffeId: spiffeIdSchema.optional(),
    // A whole trust domain is not a prefix an admin revokes by accident: name a path.
    spiffeIdPrefix: spiffeIdSchema
      .refine(
        (id) => !isTrustDomainId(id),
        'name a path below the trust domain; revoking everything is refused',
      )
      .optional(),
    attestor: z
      .string()
      .regex(/^[a-z0-9_]{1,64}$/)
      .optional(),
    reason: reasonSchema,
  })
  .refine(
    (b) => [b.task, b.spiffeId, b.spiffeIdPrefix, b.attestor].filter((v) => v !== undefined).length === 1,
    'name exactly one of task, spiffeId, spiffeIdPrefix, attestor',
  );

const pageQuery = {
  cursor: z.string().max(1024).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
};
const credentialQuery = z.strictObject({
  ...pageQuery,
  task: taskIdSchema.optional(),
  spiffeId: spiffeIdSchema.optional(),
  spiffeIdPrefix: spiffeIdSchema.optional(),
  attestor: z
    .string()
    .regex(/^[a-z0-9_]{1,64}$/)
    .optional(),
  status: z.enum(['active', 'expired', 'revoked']).optional(),
});
const taskQuery = z.strictObject({
  ...pageQuery,
  owner: spiffeIdSchema.optional(),
  status: z.enum(['active', 'completed', 'expired', 'revoked']).optional(),
});

function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  const result = schema.safeParse(query);
  if (!result.success) throw invalidRequest(result.error);
  return result.data;
}

/** The admin view of a credential: its record with the derived status. */
export function credentialJson(view: CredentialView, now: number): Record<string, unknown> {
  const { credential: c, task } = view;
  const status = credentialStatus(view, now);
  const ended = task?.endedAt !== undefined && task.status !== 'expired';
  return {
    id: c.id,
    type: c.type,
    spiffeId: c.spiffeId,
    task: c.task,
    attestor: c.attestor,
    audience: c.audience,
    issuedAt: c.issuedAt,
    expiresAt: c.expiresAt,
    kid: c.kid,
    legacy: c.legacy ?? false,
    status,
    ...(status === 'revoked'
      ? {
          revokedAt: c.revokedAt ?? (ended ? task?.endedAt : undefined),
          revokedReason: c.revokedReason ?? (ended ? task?.endReason : undefined),
        }
      : {}),
    taskStatus: task?.status ?? null,
  };
}

function taskJson(task: TaskRecord): Record<string, unknown> {
  return { ...task };
}

const idParam = (what: 'credential' | 'task'): RequestHandler =>
  function idParamStep(req, res, next) {
    const id = req.params.id;
    const ok = typeof id === 'string' && (what === 'task' ? isTaskId(id) : /^[A-Za-z0-9-]{1,64}$/.test(id));
    if (!ok) {
      next(new WritError('ERR_NOT_FOUND', `no such ${what}`));
      return;
    }
    res.locals.id = id;
    next();
  };

function listCredentials(deps: Deps): RequestHandler {
  return async function listCredentialsStep(req, res) {
    const { cursor, limit, ...filter } = parseQuery(credentialQuery, req.query);
    const page = await deps.store.listCredentials(filter, { cursor, limit });
    const now = seconds(deps.clock);
    res.json({ items: page.items.map((v) => credentialJson(v, now)), next: page.next ?? null });
  };
}

function getCredential(deps: Deps): RequestHandler {
  return async function getCredentialStep(_req, res) {
    const view = await deps.store.getCredential(res.locals.id as string);
    if (!view) throw new WritError('ERR_NOT_FOUND', 'no such credential');
    res.json(credentialJson(view, seconds(deps.clock)));
  };
}

function revokeCredential(deps: Deps): RequestHandler {
  return async function revokeCredentialStep(_req, res) {
    const reason = (res.locals.body as { reason?: string }).reason ?? REASON_ADMIN;
    const result = await deps.lifecycle.revokeCredential(
      res.locals.id as string,
      reason,
      undefined,
      actorOf(res),
    );
    deps.logger.info(
      { reqId: res.locals.reqId, id: res.locals.id, reason, revoked: result.revoked },
      'admin revoke',
    );
    res.json({ revoked: result.revoked, credential: credentialJson(result.view, seconds(deps.clock)) });
  };
}

function listTasks(deps: Deps): RequestHandler {
  return async function listTasksStep(req, res) {
    const { cursor, limit, ...filter } = parseQuery(taskQuery, req.query);
    const page = await deps.store.listTasks(filter, { cursor, limit });
    res.json({ items: page.items.map(taskJson), next: page.next ?? null });
  };
}

function getTask(deps: Deps): RequestHandler {
  return async function getTaskStep(_req, res) {
    const task = await deps.store.getTask(res.locals.id as string);
    if (!task) throw new WritError('ERR_NOT_FOUND', 'no such task');
    const credentials = await deps.store.countTaskCredentials(task.id);
    res.json({ ...taskJson(task), credentials });
  };
}

function revokeTask(deps: Deps): RequestHandler {
  return async function revokeTaskStep(_req, res) {
    const reason = (res.locals.body as { reason?: string }).reason ?? REASON_ADMIN;
    const task = await deps.lifecycle.endTask(res.locals.id as string, 'revoked', reason, actorOf(res));
    deps.logger.info({ reqId: res.locals.reqId, task: task.id, reason }, 'admin revoked task');
    res.status(202).json(taskJson(task));
  };
}

function bulkRevoke(deps: Deps): RequestHandler {
  return async function bulkRevokeStep(_req, res) {
    const { reason, ...rest } = res.locals.body as z.output<typeof bulkBodySchema>;
    const selector = Object.fromEntries(
      Object.entries(rest).filter(([, v]) => v !== undefined),
    ) as BulkSelector;
    const result = await deps.lifecycle.bulkRevoke(selector, reason ?? REASON_ADMIN, actorOf(res));
    deps.logger.info({ reqId: res.locals.reqId, selector, ...result }, 'admin bulk revocation');
    res.json(result);
  };
}

/** An empty body is an empty object for the revoke endpoints, whose body is optional. */
const optionalJson: RequestHandler = function optionalJson(req, _res, next) {
  if (req.headers['content-length'] === '0' || (req.body === undefined && !req.headers['content-type'])) {
    req.body = {};
    next();
    return;
  }
  requireJson(req, _res, next);
};

export function adminRoutes(deps: Deps): Router {
  const router = Router();
  const td = deps.config.trustDomain;
  // Reading needs the admin token; every change also needs a fresh TOTP code (X-Writ-OTP) — revoking one
  // credential too: one by one, a stolen token alone could otherwise revoke everything.
  const otp = adminOtp(deps);
  router.use('/v1/admin', adminAuth(deps));
  router.post('/v1/admin/entries', otp, requireJson, parseBody(entrySchema(td)), createEntry(deps));
  router.get('/v1/admin/entries', listEntries(deps));
  router.get('/v1/admin/entries/:id', entryIdParam, getEntry(deps));
  router.put(
    '/v1/admin/entries/:id',
    entryIdParam,
    otp,
    requireJson,
    parseBody(entrySchema(td)),
    updateEntry(deps),
  );
  router.delete('/v1/admin/entries/:id', entryIdParam, otp, deleteEntry(deps));
  router.post(
    '/v1/admin/join-tokens',
    otp,
    requireJson,
    parseBody(joinTokenRequestSchema(td)),
    createJoinTokenStep(deps),
  );
  router.get('/v1/admin/credentials', listCredentials(deps));
  router.get('/v1/admin/credentials/:id', idParam('credential'), getCredential(deps));
  router.post(
    '/v1/admin/credentials/:id/revoke',
    idParam('credential'),
    otp,
    optionalJson,
    parseBody(revokeBodySchema),
    revokeCredential(deps),
  );
  router.get('/v1/admin/tasks', listTasks(deps));
  router.get('/v1/admin/tasks/:id', idParam('task'), getTask(deps));
  router.post(
    '/v1/admin/tasks/:id/revoke',
    idParam('task'),
    otp,
    optionalJson,
    parseBody(revokeBodySchema),
    revokeTask(deps),
  );
  router.post('/v1/admin/revocations', otp, requireJson, parseBody(bulkBodySchema), bulkRevoke(deps));
  router.post('/v1/admin/accounts', otp, requireJson, parseBody(accountBodySchema), createAccount(deps));
  router.get('/v1/admin/accounts', listAccounts(deps));
  router.post('/v1/admin/accounts/:name/disable', otp, disableAccount(deps));
  router.get('/v1/admin/policy', getPolicy(deps));
  router.post('/v1/admin/policy/reload', otp, reloadPolicy(deps));
  router.get('/v1/admin/approvals/:id', getApproval(deps));
  router.post('/v1/admin/approvals/:id/approve', otp, decideApproval(deps, true));
  router.post('/v1/admin/approvals/:id/deny', otp, decideApproval(deps, false));
  router.get('/v1/admin/audit', pageAudit(deps));
  router.get('/v1/admin/audit/verify', verifyAudit(deps));
  return router;
}

// ---- accounts and audit

const accountBodySchema = z.strictObject({
  name: z.string().regex(ADMIN_NAME_PATTERN, 'a name is [a-z][a-z0-9_.-]{1,31}'),
});

/** The audit actor of an admin request. */
/** The audit actor of an admin request. */
export function actorOf(res: Response): string {
  return `admin:${getAdmin(res).name}`;
}

function createAccount(deps: Deps): RequestHandler {
  return async function createAccountStep(_req, res) {
    const { name } = res.locals.body as { name: string };
    const created = await deps.accounts.create(name);
    await deps.audit.append({ type: 'admin.account.created', actor: actorOf(res), subject: `admin:${name}` });
    deps.logger.info({ reqId: res.locals.reqId, account: name }, 'admin account created');
    res.status(201).set('Cache-Control', 'no-store').json(created);
  };
}

function listAccounts(deps: Deps): RequestHandler {
  return async function listAccountsStep(_req, res) {
    const accounts = await deps.accounts.list();
    res.json({ accounts });
  };
}

function disableAccount(deps: Deps): RequestHandler {
  return async function disableAccountStep(req, res) {
    const name = req.params.name;
    if (typeof name !== 'string' || !ADMIN_NAME_PATTERN.test(name))
      throw new WritError('ERR_NOT_FOUND', 'no such account');
    const account = await deps.accounts.disable(name);
    if (!account) throw new WritError('ERR_NOT_FOUND', 'no such account');
    await deps.audit.append({
      type: 'admin.account.disabled',
      actor: actorOf(res),
      subject: `admin:${name}`,
    });
    res.json(account);
  };
}

/** The loaded policies: ids, effects, caps and approval marks (file and position, never the text). */
function getPolicy(deps: Deps): RequestHandler {
  return function getPolicyStep(_req, res) {
    const set = deps.policy.policySet;
    res.json({ version: deps.policy.version, policies: set.policies, warnings: set.warnings });
  };
}

/** Validates the policy directory anew and swaps it in; a bad set keeps the old one and answers 400. */
function reloadPolicy(deps: Deps): RequestHandler {
  return async function reloadPolicyStep(_req, res) {
    const dir = deps.config.policy.dir ?? DEFAULT_POLICY_DIR;
    const before = deps.policy.version;
    try {
      await deps.policy.reload(dir);
    } catch (e) {
      if (isPolicyError(e)) {
        await deps.audit.append({
          type: 'admin.policy.reload_failed',
          actor: actorOf(res),
          decision: 'deny',
        });
        throw new WritError('ERR_POLICY_INVALID', e.message.slice(0, 4000));
      }
      throw e;
    }
    await deps.audit.append({
      type: 'admin.policy.reloaded',
      actor: actorOf(res),
      details: { from: before, to: deps.policy.version },
    });
    deps.logger.info({ from: before, to: deps.policy.version }, 'policies reloaded');
    announcePolicyReload(); // under `writ server --workers N`, the other processes reload too
    res.json({ version: deps.policy.version, policies: deps.policy.policySet.policies.map((p) => p.id) });
  };
}

function getApproval(deps: Deps): RequestHandler {
  return async function getApprovalStep(req, res) {
    const record = await deps.approvals.get(String(req.params.id));
    if (!record) throw new WritError('ERR_NOT_FOUND', 'no such approval (or it expired)');
    res.json(record);
  };
}

function decideApproval(deps: Deps, approve: boolean): RequestHandler {
  return async function decideApprovalStep(req, res) {
    const id = String(req.params.id);
    const pending = await deps.approvals.get(id);
    if (!pending) throw new WritError('ERR_NOT_FOUND', 'no such approval (or it expired)');
    // Audited before it takes effect: an approval the trail cannot record is not given.
    await deps.audit.append({
      type: approve ? 'approval.approved' : 'approval.denied',
      actor: actorOf(res),
      subject: `approval:${id}`,
      decision: approve ? 'allow' : 'deny',
      policies: pending.policies,
      details: { spiffeId: pending.spiffeId, type: pending.credentialType },
    });
    const record = await deps.approvals.decide(id, approve, getAdmin(res).name);
    res.json(record);
  };
}

const auditQuery = z.strictObject({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

function pageAudit(deps: Deps): RequestHandler {
  return async function pageAuditStep(req, res) {
    const q = parseQuery(auditQuery, req.query);
    const page = await deps.audit.page({
      ...(q.after === undefined ? {} : { after: q.after }),
      limit: q.limit,
    });
    res.json({ records: page.records, next: page.next ?? null });
  };
}

function verifyAudit(deps: Deps): RequestHandler {
  return async function verifyAuditStep(_req, res) {
    res.set('Cache-Control', 'no-store').json(await deps.audit.verify());
  };
}
