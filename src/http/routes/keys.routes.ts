// Admin endpoints of the key rings: what signs, what is published, and "rotate now" (MFA).
import { X509Certificate } from 'node:crypto';
import { type RequestHandler, type Response, Router } from 'express';
import { z } from 'zod';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import type { RingMember } from '../../keys/key-ring.ts';
import {
  checkRotationAllowed,
  isRotatable,
  type RingName,
  type RotationOutcome,
  RotationTooSoonError,
  rotateNow,
} from '../../keys/rotation.ts';
import type { SigningKey } from '../../keys/signing-keys.ts';
import type { CertificateAuthority } from '../../keys/x509/ca.ts';
import { adminAuth, adminOtp, parseBody, requireJson } from '../middleware.ts';
import { actorOf } from './admin.routes.ts';

const rotateBodySchema = z.strictObject({
  ring: z.enum(['jwt', 'x509', 'all']).describe('which keys to rotate'),
  compromised: z.boolean().optional().describe('drop every key of the ring from publication at once'),
});

const iso = (epoch: number | undefined) =>
  epoch === undefined ? null : new Date(epoch * 1000).toISOString();

function slotJson<T>(m: RingMember<T>) {
  return {
    state: m.state,
    createdAt: iso(m.createdAt),
    activatedAt: iso(m.activatedAt),
    retainUntil: iso(m.retainUntil),
  };
}

const fingerprints = new WeakMap<CertificateAuthority, string>();
function rootSha256(ca: CertificateAuthority): string {
  let fp = fingerprints.get(ca);
  if (fp === undefined) {
    fp = new X509Certificate(ca.rootsPem[0] ?? ca.certificatePem).fingerprint256;
    fingerprints.set(ca, fp);
  }
  return fp;
}

/** The rings as an operator sees them: never a private key. */
export function keysStatus(deps: Deps) {
  const jwt = deps.keys.ring;
  const x509 = deps.cas.ring;
  return {
    bundleSequence: Math.max(1, deps.keys.sequence, deps.cas.sequence),
    jwt: {
      rotatable: jwt.rotatable,
      sequence: jwt.sequence,
      intervalSeconds: deps.config.keys.rotation.jwtInterval,
      keys: jwt.members().map((m: RingMember<SigningKey>) => ({
        kid: m.value.kid,
        alg: m.value.alg,
        ...slotJson(m),
      })),
    },
    x509: {
      rotatable: x509.rotatable,
      sequence: x509.sequence,
      intervalSeconds: deps.config.keys.rotation.caInterval,
      authorities: x509.members().map((m: RingMember<CertificateAuthority>) => ({
        keyId: m.value.keyId,
        keyType: m.value.keyType,
        notAfter: iso(m.value.notAfter),
        rootSha256: rootSha256(m.value),
        crlUrl: m.value.crlUrl ?? null,
        ...slotJson(m),
      })),
    },
  };
}

/** Runs `step`; a RotationTooSoonError becomes 409 ERR_ROTATION_TOO_SOON with Retry-After. */
async function tooSoon(res: Response, step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (e) {
    if (!(e instanceof RotationTooSoonError)) throw e;
    res.set('Retry-After', String(e.retryAfterSeconds));
    throw new WritError('ERR_ROTATION_TOO_SOON', e.message, { cause: e });
  }
}

/** The keys current before a rotation, for its audit record. */
function currentKeys(deps: Deps): { jwtKid: string; caKeyId: string } {
  return {
    jwtKid: deps.keys.ring.members()[0]?.value.kid ?? '',
    caKeyId: deps.cas.ring.members()[0]?.value.keyId ?? '',
  };
}

async function refreshAll(deps: Deps): Promise<void> {
  await Promise.all([deps.keys.ring.refresh(), deps.cas.ring.refresh()]);
}

function getKeys(deps: Deps): RequestHandler {
  return function getKeysStep(_req, res) {
    res.set('Cache-Control', 'no-store').json(keysStatus(deps));
  };
}

function rotate(deps: Deps): RequestHandler {
  return async function rotateStep(_req, res) {
    const { ring, compromised } = res.locals.body as z.output<typeof rotateBodySchema>;
    const rings: RingName[] = ring === 'all' ? ['jwt', 'x509'] : [ring];
    const fixed = rings.filter((r) => !isRotatable(deps.config, r));
    if (fixed.length > 0) {
      throw new WritError(
        'ERR_ROTATION_UNAVAILABLE',
        `${fixed.join(' and ')} keys are given as files: replace the files and restart to rotate them`,
      );
    }
    const rotationDeps = { store: deps.store, clock: deps.clock, logger: deps.logger, config: deps.config };
    // A rotation that would be refused is refused before anything is audited or changed (either ring of `all`).
    if (!compromised) await tooSoon(res, () => checkRotationAllowed(rotationDeps, rings));
    // Audited before it takes effect: a change the trail cannot record does not happen.
    await deps.audit.append({
      type: 'admin.keys.rotate',
      actor: actorOf(res),
      subject: `keys:${ring}`,
      details: { rings, compromised: compromised === true, ...currentKeys(deps) },
    });
    const outcomes: RotationOutcome[] = [];
    try {
      await tooSoon(res, async () => {
        for (const r of rings) outcomes.push(await rotateNow(rotationDeps, r, { compromised }));
      });
    } finally {
      // With `all`, a ring rotated before a (racing) refusal stays rotated; the rings are re-read either way.
      if (outcomes.length < rings.length) await refreshAll(deps);
    }
    // This replica uses the new keys at once; the others within keys.rotation.refreshInterval.
    await refreshAll(deps);
    deps.logger.info({ reqId: res.locals.reqId, rings, compromised, outcomes }, 'admin rotated keys');
    res.json(keysStatus(deps));
  };
}

export function keysRoutes(deps: Deps): Router {
  const router = Router();
  router.get('/v1/admin/keys', adminAuth(deps), getKeys(deps));
  router.post(
    '/v1/admin/keys/rotate',
    adminAuth(deps),
    adminOtp(deps),
    requireJson,
    parseBody(rotateBodySchema),
    rotate(deps),
  );
  return router;
}
