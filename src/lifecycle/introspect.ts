// RFC 7662 introspection of a JWT-SVID: signature, issuer, expiry, then the live record and its task.
import { decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import type { Deps } from '../deps.ts';
import { credentialStatus } from '../store/status.ts';
import { type CredentialView, seconds } from '../store/types.ts';

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

/** The payload of a token that carries our signature by a published key (and that key's kid), else null. */
export async function verifySignature(
  deps: Deps,
  token: string,
): Promise<{ payload: JWTPayload; kid: string } | null> {
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
    return { payload, kid: key.kid };
  } catch {
    return null;
  }
}

export interface LiveToken {
  payload: JWTPayload & { jti: string; task: string; sub: string };
  view: CredentialView;
}

/**
 * Our signature, not expired, tracked by the store, not revoked, its task not ended: else null.
 * A store failure propagates (503): an unverifiable token is never reported live.
 */
export async function verifyLiveToken(deps: Deps, token: string): Promise<LiveToken | null> {
  const verified = await verifySignature(deps, token);
  if (!verified) return null;
  const { payload } = verified;
  if (typeof payload.jti !== 'string' || typeof payload.task !== 'string') return null;
  if (typeof payload.sub !== 'string') return null;
  const view = await deps.store.getCredential(payload.jti, payload.task);
  if (!view) return null;
  if (view.credential.spiffeId !== payload.sub || view.credential.task !== payload.task) return null;
  // Signed by the very key recorded at issuance: a token re-minted under another published key (one that
  // leaked, say) with a live credential's claims is not that credential.
  if (view.credential.type !== 'jwt' || view.credential.kid !== verified.kid) return null;
  if (credentialStatus(view, seconds(deps.clock)) !== 'active') return null;
  return { payload: payload as LiveToken['payload'], view };
}

export async function introspect(deps: Deps, token: string): Promise<IntrospectionResponse> {
  const live = await verifyLiveToken(deps, token);
  if (!live) return INACTIVE;
  const { credential } = live.view;
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
