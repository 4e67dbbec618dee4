// The relying party's copy of the broker's JWKS: fetched, each usable key imported once, looked up by kid and alg.
import { type CryptoKey, importJWK, type JWK, type JWSHeaderParameters } from 'jose';
import { VerifyError } from './errors.ts';

export function jwksUnavailable(cause: unknown): VerifyError {
  return new VerifyError('ERR_JWKS_UNAVAILABLE', undefined, { cause });
}

/**
 * The JWKS fetch, where "the keys are unavailable" is decided: a network error, a timeout (of the request
 * and of reading the body), a status other than 200 or a body that is not JSON becomes ERR_JWKS_UNAVAILABLE.
 * Redirects are not followed (as jose did): the keys come from the configured URL or not at all.
 */
export async function jwksFetch(fetchImpl: typeof fetch, url: string, timeoutMs: number): Promise<unknown> {
  let res: Response;
  let text: string;
  try {
    res = await fetchImpl(url, {
      method: 'GET',
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json, application/jwk-set+json' },
    });
    text = await res.text();
  } catch (cause) {
    throw jwksUnavailable(cause);
  }
  if (res.status !== 200) throw jwksUnavailable(new Error(`jwks http status ${res.status}`));
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw jwksUnavailable(cause);
  }
}

/** What each allowed `alg` needs of a key (jose's own table, for the JWT-SVID algorithms). */
const KEY_TYPES: ReadonlyMap<string, { kty: string; crv?: string }> = new Map([
  ['ES256', { kty: 'EC', crv: 'P-256' }],
  ['ES384', { kty: 'EC', crv: 'P-384' }],
  ['ES512', { kty: 'EC', crv: 'P-521' }],
  ['RS256', { kty: 'RSA' }],
  ['RS384', { kty: 'RSA' }],
  ['RS512', { kty: 'RSA' }],
  ['PS256', { kty: 'RSA' }],
  ['PS384', { kty: 'RSA' }],
  ['PS512', { kty: 'RSA' }],
]);
/** jose refuses shorter RSA keys when it verifies; refusing them when the set is read keeps that error coded. */
const MIN_RSA_BITS = 2048;

/** Members that only a private or symmetric JWK has. */
const SECRET_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];

/** Plain JSON object, as jose's isObject (a JWKS must be one, and each of its members). */
function isObject(value: unknown): value is Record<string, unknown> {
  if (
    typeof value !== 'object' ||
    value === null ||
    Object.prototype.toString.call(value) !== '[object Object]'
  ) {
    return false;
  }
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/**
 * Whether a JWKS member may verify tokens of `alg`: jose's isUsableJWK for a token with a kid (`ext` a
 * boolean if present, `key_ops` unique strings including "verify" if present, the kty and curve the alg
 * needs, `alg` equal if present, `use` "sig" if present), plus a string kid (SPIFFE tokens always name one).
 */
function usableFor(jwk: Record<string, unknown>, alg: string): boolean {
  const need = KEY_TYPES.get(alg);
  if (need === undefined) return false;
  const { ext, key_ops: keyOps, kty, crv, use } = jwk;
  if (ext !== undefined && typeof ext !== 'boolean') return false;
  if (keyOps !== undefined) {
    if (!Array.isArray(keyOps) || !keyOps.includes('verify')) return false;
    if (keyOps.some((op, i) => typeof op !== 'string' || keyOps.indexOf(op) !== i)) return false;
  }
  if (kty !== need.kty) return false;
  if (need.crv !== undefined && crv !== need.crv) return false;
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  return use === undefined || use === 'sig';
}

/** A (kid, alg) the JWKS names but that must not verify anything; the error is made afresh for each token. */
class Refused {
  readonly error: () => VerifyError;
  constructor(error: () => VerifyError) {
    this.error = error;
  }
}

/** kid -> alg -> the imported key, or why that pair is refused. A Map: a kid such as `__proto__` is just a string. */
type KeyTable = Map<string, Map<string, CryptoKey | Refused>>;

function noMatchingKey(): VerifyError {
  return new VerifyError('ERR_TOKEN_INVALID', 'no key of the jwks matches the token', { claim: 'kid' });
}

const SEVERAL = new Refused(
  () => new VerifyError('ERR_TOKEN_INVALID', 'several keys of the jwks match the token', { claim: 'kid' }),
);
const NOT_PUBLIC = new Refused(() =>
  jwksUnavailable(new Error('json web key set members must be public keys')),
);

const SHORT_RSA = new Refused(() =>
  jwksUnavailable(new Error(`rsa keys must be ${MIN_RSA_BITS} bits or more`)),
);

/** importJWK of a public JWK gives a public CryptoKey; anything else is not a verification key. */
function checked(key: CryptoKey | Uint8Array): CryptoKey | Refused {
  if (key instanceof Uint8Array || key.type !== 'public') return NOT_PUBLIC;
  const bits = (key.algorithm as { modulusLength?: unknown }).modulusLength;
  if (typeof bits === 'number' && bits < MIN_RSA_BITS) return SHORT_RSA;
  return key;
}

/**
 * Builds the whole table from a fetched JWKS, importing every usable (member, alg) pair with jose's
 * importJWK. A set that is not `{ keys: [objects] }` is refused entirely; a member that does not import, or
 * carries private material, refuses only its own (kid, alg) pairs, as with jose (ERR_JWKS_UNAVAILABLE).
 */
async function buildTable(jwks: unknown, algorithms: readonly string[]): Promise<KeyTable> {
  if (!isObject(jwks) || !Array.isArray(jwks.keys) || !jwks.keys.every(isObject)) {
    throw jwksUnavailable(new Error('json web key set malformed'));
  }
  const members = jwks.keys as Record<string, unknown>[];
  const table: KeyTable = new Map();
  const imports: Promise<void>[] = [];
  for (const alg of algorithms) {
    const matches = new Map<string, Record<string, unknown>[]>();
    for (const jwk of members) {
      const kid = jwk.kid;
      if (typeof kid !== 'string' || kid.length === 0 || !usableFor(jwk, alg)) continue;
      const list = matches.get(kid);
      if (list === undefined) matches.set(kid, [jwk]);
      else list.push(jwk);
    }
    for (const [kid, list] of matches) {
      const slots = table.get(kid) ?? new Map<string, CryptoKey | Refused>();
      table.set(kid, slots);
      const jwk = list[0] as Record<string, unknown>;
      if (list.length > 1) slots.set(alg, SEVERAL);
      else if (SECRET_MEMBERS.some((m) => jwk[m] !== undefined)) slots.set(alg, NOT_PUBLIC);
      else {
        imports.push(
          importJWK({ ...jwk } as JWK, alg).then(
            (key) => {
              slots.set(alg, checked(key));
            },
            (cause: unknown) => {
              slots.set(alg, new Refused(() => jwksUnavailable(cause)));
            },
          ),
        );
      }
    }
  }
  await Promise.all(imports);
  return table;
}

export interface JwksCacheOptions {
  url: string;
  fetch: typeof fetch;
  /** The verifier's allow-list: only keys usable with one of these are imported. */
  algorithms: readonly string[];
  /** Minimum time between refetches caused by a token whose (kid, alg) is not in the set. */
  cooldownMs: number;
  /** The set is refetched (and, until that succeeds, not used) once it is older. */
  cacheMaxAgeMs: number;
  timeoutMs: number;
  now: () => number;
}

/** After a failed fetch, a verification that needs the keys refetches at most this often (or per cooldown, if less). */
const RETRY_AFTER_FAILURE_MS = 1_000;
/** Bounds of the memo of encoded protected headers: a broker signs with one or two headers at a time. */
const MEMO_ENTRIES = 32;
const MEMO_HEADER_LENGTH = 512;

/** One fetched JWKS. Replaced as a whole, memo included, by each successful fetch. */
interface KeySet {
  readonly table: KeyTable;
  /**
   * Encoded protected header -> the key its (kid, alg) resolved to in this set. The same bytes always
   * decode to the same kid and alg, so a hit is exactly what a lookup would return, minus the decoding.
   */
  readonly memo: Map<string, CryptoKey>;
  readonly fetchedAt: number;
}

/**
 * The semantics of jose's createRemoteJWKSet, without its per-token filtering and bookkeeping: the lookup
 * of a known (kid, alg) is synchronous. A refetch replaces the whole set at once, so a key removed from
 * the JWKS stops verifying as soon as the refetch lands; a failed refetch keeps the set until it is
 * `cacheMaxAgeMs` old, then verification fails closed (ERR_JWKS_UNAVAILABLE) until a fetch succeeds.
 * At most one fetch is in flight; a token of an unknown (kid, alg) waits for it or, past the cooldown
 * since the last fetch (successful or not, unlike jose), starts one.
 */
export class JwksCache {
  readonly #o: JwksCacheOptions;
  #set: KeySet | undefined;
  /** When the last fetch ended, successful or not. */
  #attemptedAt = Number.NEGATIVE_INFINITY;
  #lastFailure: VerifyError | undefined;
  #pending: Promise<void> | undefined;

  constructor(options: JwksCacheOptions) {
    this.#o = options;
  }

  /** Fetches the set now (or joins the fetch in flight). Rejects with a VerifyError. */
  refresh(): Promise<void> {
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async #fetch(): Promise<void> {
    try {
      const json = await jwksFetch(this.#o.fetch, this.#o.url, this.#o.timeoutMs);
      const table = await buildTable(json, this.#o.algorithms);
      // One assignment: no verification ever sees a mix of the old and the new set.
      this.#set = { table, memo: new Map(), fetchedAt: this.#o.now() };
      this.#lastFailure = undefined;
    } catch (e) {
      this.#lastFailure = e instanceof VerifyError ? e : jwksUnavailable(e);
      throw this.#lastFailure;
    } finally {
      this.#attemptedAt = this.#o.now();
    }
  }

  /** The set, when it is younger than `cacheMaxAgeMs`. */
  #fresh(): KeySet | undefined {
    const set = this.#set;
    return set !== undefined && within(this.#o.now(), set.fetchedAt, this.#o.cacheMaxAgeMs) ? set : undefined;
  }

  /**
   * The key a previous lookup of this exact encoded protected header returned, from the current set while
   * it is fresh; otherwise undefined, and the caller goes through {@link key}.
   */
  remembered(encodedHeader: string): CryptoKey | undefined {
    return this.#fresh()?.memo.get(encodedHeader);
  }

  /**
   * The key for a token's protected header (its `alg` already allow-listed, its `kid` a non-empty string):
   * the key itself when the cached set holds it, a promise when the set must be fetched first. Throws (or
   * rejects with) a VerifyError. `encodedHeader`, the header as the token carries it, is remembered on a hit.
   */
  key(header: JWSHeaderParameters, encodedHeader?: string): CryptoKey | Promise<CryptoKey> {
    const set = this.#fresh();
    if (set === undefined) return this.#refetchThenFind(header);
    const slot = set.table.get(header.kid as string)?.get(header.alg as string);
    if (slot === undefined) {
      if (this.#pending !== undefined || !within(this.#o.now(), this.#attemptedAt, this.#o.cooldownMs)) {
        return (this.#pending ?? this.refresh()).then(() => this.#find(header));
      }
      throw noMatchingKey();
    }
    if (slot instanceof Refused) throw slot.error();
    if (encodedHeader !== undefined && encodedHeader.length <= MEMO_HEADER_LENGTH) {
      // Headers an attacker varies (extra members, another kid of the set) can only evict, never mislead.
      if (set.memo.size >= MEMO_ENTRIES) set.memo.clear();
      set.memo.set(encodedHeader, slot);
    }
    return slot;
  }

  /** No usable set: fetch (or join the fetch in flight), except shortly after a failed fetch. */
  async #refetchThenFind(header: JWSHeaderParameters): Promise<CryptoKey> {
    const failure = this.#lastFailure;
    const spacing = Math.min(RETRY_AFTER_FAILURE_MS, this.#o.cooldownMs);
    if (
      this.#pending === undefined &&
      failure !== undefined &&
      within(this.#o.now(), this.#attemptedAt, spacing)
    ) {
      throw jwksUnavailable(failure.cause);
    }
    await this.refresh();
    return this.#find(header);
  }

  /** After a fetch: the lookup without any further fetching. */
  #find(header: JWSHeaderParameters): CryptoKey {
    const slot = this.#set?.table.get(header.kid as string)?.get(header.alg as string);
    if (slot === undefined) throw noMatchingKey();
    if (slot instanceof Refused) throw slot.error();
    return slot;
  }
}

/** `since` is less than `duration` ago; a clock that went backwards counts as elapsed. */
function within(now: number, since: number, duration: number): boolean {
  const elapsed = now - since;
  return elapsed >= 0 && elapsed < duration;
}
