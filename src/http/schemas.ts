// Wire schemas of request bodies: strict (unknown fields are refused), bounded, typed.
import { z } from 'zod';
import { selectorSchema } from '../attestation/selectors.ts';
import { callerTaskIdSchema, platformTaskIdSchema } from '../lifecycle/task-id.ts';
import { isMemberOf, isTrustDomainId, spiffeIdSchema } from '../spiffe/spiffe-id.ts';

const DAY = 86_400;
const ttlSeconds = z
  .number()
  .int()
  .min(1)
  .max(7 * DAY);

/** A SPIFFE ID in this broker's trust domain. */
export function memberIdSchema(trustDomain: string) {
  return spiffeIdSchema.superRefine((id, ctx) => {
    if (!isMemberOf(id, trustDomain)) {
      ctx.addIssue({ code: 'custom', message: `the SPIFFE ID must be in trust domain ${trustDomain}` });
    } else if (isTrustDomainId(id)) {
      ctx.addIssue({
        code: 'custom',
        message: 'a workload SPIFFE ID needs a path; the trust domain ID is not one',
      });
    }
  });
}

const AUDIENCE_TEXT = /^[^\p{Cc}]+$/u;
const audienceSchema = z.string().min(1).max(512).regex(AUDIENCE_TEXT, 'no control characters');

export function jwtSvidRequestSchema(trustDomain: string) {
  return z.strictObject({
    attestor: z.string().min(1).max(64),
    evidence: z.custom<unknown>((v) => v !== undefined, { message: 'evidence is required' }),
    audience: z.array(audienceSchema).min(1).max(16),
    ttl: z.number().int().min(1).optional(),
    task: callerTaskIdSchema.optional(),
    spiffeId: memberIdSchema(trustDomain).optional(),
    approval: z
      .string()
      .regex(/^apr_[A-Za-z0-9_-]{22}$/, 'an approval id')
      .optional(),
  });
}

/**
 * The common JWT-SVID request — `attestor`, `evidence`, `audience` and maybe `ttl`, nothing else — checked
 * by hand: the body when it passes every rule of jwtSvidRequestSchema (so that the schema would accept it
 * as it is), else undefined, and the schema decides, with its errors. It never refuses anything itself.
 */
export function commonJwtSvidRequest(
  body: unknown,
): z.infer<ReturnType<typeof jwtSvidRequestSchema>> | undefined {
  if (typeof body !== 'object' || body === null || Object.getPrototypeOf(body) !== Object.prototype) {
    return undefined;
  }
  const b = body as Record<string, unknown>;
  let keys = 0;
  for (const key in b) {
    if (!Object.hasOwn(b, key)) return undefined;
    if (key !== 'attestor' && key !== 'evidence' && key !== 'audience' && key !== 'ttl') return undefined;
    keys++;
  }
  const { attestor, evidence, audience, ttl } = b;
  if (keys !== Object.getOwnPropertyNames(b).length) return undefined;
  if (typeof attestor !== 'string' || attestor.length < 1 || attestor.length > 64) return undefined;
  if (evidence === undefined) return undefined;
  if (!Array.isArray(audience) || audience.length < 1 || audience.length > 16) return undefined;
  for (const a of audience) {
    if (typeof a !== 'string' || a.length < 1 || a.length > 512 || !AUDIENCE_TEXT.test(a)) return undefined;
  }
  if (ttl !== undefined && !(typeof ttl === 'number' && Number.isSafeInteger(ttl) && ttl >= 1))
    return undefined;
  return {
    attestor,
    evidence,
    audience: [...(audience as string[])],
    ...(ttl === undefined ? {} : { ttl: ttl as number }),
  };
}

export function entrySchema(trustDomain: string) {
  return z.strictObject({
    spiffeId: memberIdSchema(trustDomain),
    selectors: z
      .array(selectorSchema)
      .min(1)
      .max(32)
      .refine((s) => new Set(s).size === s.length, 'selectors must be distinct'),
    audiences: z.array(audienceSchema).min(1).max(64).optional(),
    jwtTtl: ttlSeconds.optional(),
    x509Ttl: ttlSeconds.optional(),
    taskDeadline: ttlSeconds.optional(),
  });
}

export function joinTokenRequestSchema(trustDomain: string) {
  return z.strictObject({
    spiffeId: memberIdSchema(trustDomain),
    ttl: z
      .number()
      .int()
      .min(1)
      .max(30 * DAY)
      .optional(),
    task: platformTaskIdSchema.optional(),
  });
}

export const introspectRequestSchema = z.strictObject({
  token: z.string().min(1).max(8192),
  token_type_hint: z.string().max(64).optional(),
});
