// The JWT-SVID issue pipeline: attest -> identity -> limits -> sign -> re-verify -> record.
import { randomUUID } from 'node:crypto';
import type { VerifiedAttestation } from '../attestation/facade.ts';
import { hashSecret } from '../audit/audit-log.ts';
import type { Deps } from '../deps.ts';
import { isWritError, WritError } from '../errors.ts';
import type { SigningKey } from '../keys/signing-keys.ts';
import { generateTaskId } from '../lifecycle/task-id.ts';
import { resolveIdentity } from '../registration/match.ts';
import { isMemberOf, isTrustDomainId } from '../spiffe/spiffe-id.ts';
import {
  type CredentialRecord,
  type CredentialType,
  type RegistrationEntry,
  seconds,
  type TaskInit,
  type TaskRecord,
} from '../store/types.ts';
import { signJwt, verifyJwt } from './jws.ts';
import { policyGate } from './policy-gate.ts';

export interface JwtSvidRequest {
  attestor: string;
  evidence: unknown;
  audience: string[];
  ttl?: number | undefined;
  task?: string | undefined;
  spiffeId?: string | undefined;
  /** An approval id, when a policy required an admin's approval for this request. */
  approval?: string | undefined;
}

export interface IssuedJwtSvid {
  token: string;
  spiffeId: string;
  id: string;
  task: string;
  expiresAt: number;
}

export interface Plan {
  spiffeId: string;
  audience: string[];
  task: TaskInit;
  /** Upper bound of the credential's lifetime, seconds. */
  ttl: number;
}

export interface PlanOptions {
  /**
   * The registration entries, already being read (`deps.store.listEntries()` started when the request
   * arrived, in the same round trip as its rate-limit check). Read here when not given.
   */
  entries?: Promise<RegistrationEntry[]> | undefined;
}

/** Attests the caller and decides what it may have: identity, audiences, task and TTL. */
export async function planJwtSvid(
  deps: Deps,
  req: JwtSvidRequest,
  sourceIp: string | undefined,
  opts: PlanOptions = {},
): Promise<{ plan: Plan; attestation: VerifiedAttestation }> {
  return planSvid(deps, req, sourceIp, 'jwt', opts);
}

/** What planning needs of a request; an X.509-SVID request has no audience (`[]`). */
export type SvidPlanRequest = JwtSvidRequest;

/**
 * The planning both pipelines share (JWT-SVID and X.509-SVID): attest, resolve the identity, check the
 * entry's audiences, place the task, cap the TTL (the entry's `jwtTtl` or `x509Ttl` by type) and ask policy.
 */
export async function planSvid(
  deps: Deps,
  req: SvidPlanRequest,
  sourceIp: string | undefined,
  credentialType: CredentialType,
  opts: PlanOptions = {},
): Promise<{ plan: Plan; attestation: VerifiedAttestation }> {
  const { config } = deps;
  const creds = config.credentials;
  if (req.ttl !== undefined && req.ttl > creds.maxTtl) {
    throw new WritError('ERR_TTL_INVALID', `ttl must be between 1 and ${creds.maxTtl} seconds`);
  }
  const attestation = await deps.attestors.attest(req.attestor, req.evidence, sourceIp);
  const entries = await (opts.entries ?? deps.store.listEntries());
  const { spiffeId, entry } = resolveIdentity(attestation, entries, req.spiffeId);
  // Defence in depth: whatever the entries say, only workload IDs of our own trust domain are minted.
  if (!isMemberOf(spiffeId, config.trustDomain) || isTrustDomainId(spiffeId)) {
    deps.logger.error(
      { spiffeId: spiffeId.slice(0, 256) },
      'an entry names a SPIFFE ID outside the trust domain',
    );
    throw new WritError('ERR_NO_MATCHING_ENTRY');
  }

  if (entry?.audiences) {
    const allowed = new Set(entry.audiences);
    const refused = req.audience.find((a) => !allowed.has(a));
    if (refused !== undefined) throw new WritError('ERR_AUDIENCE_NOT_ALLOWED');
  }

  let task: TaskInit;
  const now = seconds(deps.clock);
  const deadline = now + Math.min(entry?.taskDeadline ?? creds.taskDeadline, creds.maxTaskDeadline);
  if (attestation.task !== undefined) {
    if (req.task !== undefined && req.task !== attestation.task) {
      throw new WritError('ERR_TASK_MISMATCH', 'the evidence binds the workload to another task');
    }
    task = { id: attestation.task, owner: spiffeId, origin: 'attestor', deadline };
  } else if (req.task !== undefined) {
    task = { id: req.task, owner: spiffeId, origin: 'caller', deadline };
  } else {
    task = { id: generateTaskId(), owner: spiffeId, origin: 'generated', deadline };
  }

  const jwt = credentialType === 'jwt';
  const limit = Math.min(
    req.ttl ?? (jwt ? creds.jwtDefaultTtl : creds.x509DefaultTtl),
    (jwt ? entry?.jwtTtl : entry?.x509Ttl) ?? creds.maxTtl,
    attestation.ttlCap ?? creds.maxTtl,
    creds.maxTtl,
  );
  const { ttl } = await policyGate(deps, {
    attestation,
    spiffeId,
    task: task.id,
    audience: req.audience,
    credentialType,
    ttl: limit,
    sourceIp,
    request: { attestor: req.attestor, ttl: req.ttl, task: req.task, approval: req.approval },
  });
  return { plan: { spiffeId, audience: req.audience, task, ttl }, attestation };
}

/** The claims of a JWT-SVID for its credential record. */
function claimsOf(deps: Deps, c: CredentialRecord) {
  return {
    task: c.task,
    sub: c.spiffeId,
    aud: c.audience,
    iss: deps.issuer,
    jti: c.id,
    iat: c.issuedAt,
    nbf: c.issuedAt - deps.config.credentials.backdate,
    exp: c.expiresAt,
  };
}

async function sign(deps: Deps, key: SigningKey, c: CredentialRecord): Promise<string> {
  return signJwt(key, claimsOf(deps, c));
}

/**
 * Mint, then check what was minted: the signature verified with the public key, and the token read back from
 * its own bytes — header (alg, kid, typ) and every claim equal to the record's, the token valid now. Stricter
 * than a relying party's check (which only needs the claims it reads), with the same outcome on a good token.
 */
async function reverify(deps: Deps, key: SigningKey, token: string, c: CredentialRecord): Promise<void> {
  try {
    const { header, payload } = await verifyJwt(key, token);
    if (header.alg !== key.alg || header.kid !== key.kid || header.typ !== 'JWT') {
      throw new Error('the header differs from the signing key');
    }
    const expected = claimsOf(deps, c);
    if (!sameClaims(payload, expected)) throw new Error('claims differ from the credential record');
    const now = seconds(deps.clock);
    const tolerance = deps.config.credentials.backdate;
    if (expected.exp <= now - tolerance || expected.nbf > now + tolerance) {
      throw new Error('the token is not valid now');
    }
  } catch (cause) {
    throw new WritError('server_error', undefined, { cause });
  }
}

/** Exactly the expected claims, no more: scalars equal, arrays equal element by element. */
function sameClaims(payload: Record<string, unknown>, expected: Record<string, unknown>): boolean {
  const names = Object.keys(payload);
  if (names.length !== Object.keys(expected).length) return false;
  // Plain loops: this runs on every issuance (Array callbacks here were where V8 20.x deoptimised, see
  // docs/performance.md).
  for (const name of names) {
    const want = expected[name];
    const got = payload[name];
    if (Array.isArray(want)) {
      if (!Array.isArray(got) || got.length !== want.length) return false;
      for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return false;
    } else if (!Object.hasOwn(expected, name) || got !== want) return false;
  }
  return true;
}

// Refusals worth a record in the audit trail (malformed requests and outages are not decisions).
export const AUDITED_DENIALS: ReadonlySet<string> = new Set([
  'ERR_ATTESTATION_FAILED',
  'ERR_NO_MATCHING_ENTRY',
  'ERR_AMBIGUOUS_ENTRY',
  'ERR_AUDIENCE_NOT_ALLOWED',
  'ERR_TASK_ENDED',
  'ERR_TASK_MISMATCH',
  'access_denied',
  'ERR_APPROVAL_INVALID',
]);

/** Issues a JWT-SVID; every issuance and every denial lands in the audit trail. */
export function issueJwtSvid(
  deps: Deps,
  req: JwtSvidRequest,
  sourceIp?: string,
  opts: PlanOptions = {},
): Promise<IssuedJwtSvid> {
  return audited(deps, 'jwt', req, sourceIp, () => mintJwtSvid(deps, req, sourceIp, opts), {
    audience: req.audience,
  });
}

/**
 * Runs a mint and audits its outcome: the issuance (fail closed: a credential that cannot be audited is not
 * handed out — it is tracked, and expires unused) or the denial.
 */
export async function audited<T extends { spiffeId: string; id: string; task: string; expiresAt: number }>(
  deps: Deps,
  type: 'jwt' | 'x509',
  req: { attestor: string; audience?: readonly string[] | undefined },
  sourceIp: string | undefined,
  mint: () => Promise<T>,
  details: Record<string, string | number | boolean | null | string[]> = {},
): Promise<T> {
  try {
    const issued = await mint();
    await deps.audit.append({
      type: 'svid.issued',
      actor: `workload:${issued.spiffeId}`,
      subject: `credential:${issued.id}`,
      decision: 'allow',
      details: { type, task: issued.task, attestor: req.attestor, expiresAt: issued.expiresAt, ...details },
    });
    return issued;
  } catch (e) {
    if (isWritError(e) && AUDITED_DENIALS.has(e.code)) {
      await auditDenial(deps, { attestor: req.attestor, audience: req.audience ?? [] }, sourceIp, e, type);
    }
    throw e;
  }
}

/**
 * A denial in the audit trail. Caller-supplied values (audiences) go in only as hashes, so that a request
 * cannot keep its denial out of the trail by making a value look like a secret; if the full record still
 * cannot be written, a minimal one is.
 */
export async function auditDenial(
  deps: Deps,
  req: { attestor: string; audience: readonly string[] },
  sourceIp: string | undefined,
  e: WritError,
  type: 'jwt' | 'x509' = 'jwt',
): Promise<void> {
  const spiffeId = typeof e.meta?.spiffeId === 'string' ? e.meta.spiffeId : undefined;
  const actor = spiffeId
    ? `workload:${spiffeId}`
    : `attestor:${deps.attestors.has(req.attestor) ? req.attestor : 'unknown'}`;
  const policies = Array.isArray(e.extra?.policies) ? { policies: e.extra.policies as string[] } : {};
  try {
    await deps.audit.append({
      type: 'svid.denied',
      actor,
      decision: 'deny',
      ...policies,
      details: {
        type,
        code: e.code,
        source_ip: sourceIp ?? null,
        audience: req.audience.map((a) => hashSecret(a)),
      },
    });
  } catch (err) {
    deps.logger.warn({ err }, 'could not audit a denial in full; writing a minimal record');
    await deps.audit
      .append({
        type: 'svid.denied',
        actor: 'system:issuance',
        decision: 'deny',
        details: { type, code: e.code },
      })
      .catch((err2: unknown) => deps.logger.error({ err: err2 }, 'could not audit a denial'));
  }
}

async function mintJwtSvid(
  deps: Deps,
  req: JwtSvidRequest,
  sourceIp: string | undefined,
  opts: PlanOptions,
): Promise<IssuedJwtSvid> {
  const { plan, attestation } = await planJwtSvid(deps, req, sourceIp, opts);
  const key = deps.keys.current();
  const now = seconds(deps.clock);
  let expiresAt = Math.min(now + plan.ttl, plan.task.deadline);
  // An existing task's deadline is only known to the store; it refuses a credential that would outlive it,
  // and the pipeline re-signs once within that deadline (one round trip in the common case).
  for (let attempt = 0; attempt < 2; attempt++) {
    if (expiresAt <= now) throw new WritError('ERR_TASK_ENDED');
    const credential: CredentialRecord = {
      id: randomUUID(),
      type: 'jwt',
      spiffeId: plan.spiffeId,
      task: plan.task.id,
      attestor: attestation.attestor,
      audience: plan.audience,
      issuedAt: now,
      expiresAt,
      kid: key.kid,
      legacy: attestation.legacy || undefined,
    };
    const token = await sign(deps, key, credential);
    await reverify(deps, key, token, credential);
    const recorded = await deps.store.recordIssuance(credential, plan.task);
    if (recorded.ok) {
      if (recorded.created) scheduleDeadline(deps, recorded.task);
      return { token, spiffeId: plan.spiffeId, id: credential.id, task: plan.task.id, expiresAt };
    }
    if (recorded.reason === 'task_ended') throw new WritError('ERR_TASK_ENDED');
    if (recorded.reason === 'task_mismatch') {
      throw new WritError('ERR_TASK_MISMATCH', 'the task belongs to another workload');
    }
    expiresAt = capToTask(recorded.task, expiresAt);
  }
  throw new WritError('ERR_TASK_ENDED');
}

// Off the hot path. In production a no-op (the worker ends tasks from the store's deadline index); in dev a
// timer, and a lost one is reconciled by the sweeper.
export function scheduleDeadline(deps: Deps, task: TaskRecord): void {
  deps.lifecycle.scheduler.taskOpened(task).catch((err: unknown) => {
    deps.logger.warn({ err, task: task.id }, 'could not schedule the task deadline; the sweeper will end it');
  });
}

function capToTask(task: TaskRecord, expiresAt: number): number {
  return Math.min(expiresAt, task.deadline);
}
