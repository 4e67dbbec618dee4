// RFC 7662 introspection of a JWT-SVID: signature, issuer, expiry, then the live record and its task.
import { decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import type { Deps } from '../deps.ts';
import { seconds } from '../store/types.ts';

export type IntrospectionResponse =
  | { active: false }
  | {
      active: true;
      token_type: 'JWT-SVID';
      iss: string;
      sub: string;
      spiffe_id: string;
      aud: string[];
      exp: number;
      iat: number;
      jti: string;
      task: string;
    };

const INACTIVE: IntrospectionResponse = { active: false };

async function verifySignature(deps: Deps, token: string): Promise<JWTPayload | null> {
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    return null;
  }
  const key = kid === undefined ? undefined : deps.keys.publicKey(kid);
  if (!key) return null;
  try {
    const { payload } = await jwtVerify(token, key.publicKey, {
      algorithms: [key.alg],
      issuer: deps.issuer,
      typ: 'JWT',
      requiredClaims: ['sub', 'aud', 'exp', 'iat', 'jti', 'task'],
      currentDate: new Date(deps.clock()),
    });
    return payload;
  } catch {
    return null;
  }
}

/**
 * Active means: our signature, not expired, tracked by the store, not revoked, its task not ended.
 * A store failure propagates (503): an unverifiable token is never reported active.
 */
export async function introspect(deps: Deps, token: string): Promise<IntrospectionResponse> {
  const payload = await verifySignature(deps, token);
  if (!payload || typeof payload.jti !== 'string' || typeof payload.task !== 'string') return INACTIVE;
  const view = await deps.store.getCredential(payload.jti, payload.task);
  if (!view) return INACTIVE;
  const { credential, task } = view;
  const now = seconds(deps.clock);
  if (credential.revokedAt !== undefined || credential.expiresAt <= now) return INACTIVE;
  if (task?.status !== 'active' || task.deadline <= now) return INACTIVE;
  if (credential.spiffeId !== payload.sub || credential.task !== payload.task) return INACTIVE;
  return {
    active: true,
    token_type: 'JWT-SVID',
    iss: deps.issuer,
    sub: credential.spiffeId,
    spiffe_id: credential.spiffeId,
    aud: credential.audience,
    exp: credential.expiresAt,
    iat: credential.issuedAt,
    jti: credential.id,
    task: credential.task,
  };
}
