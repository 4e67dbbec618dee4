// The tamper-evident audit trail: its contract, the record format and hash, and the chain check both adapters run.
//
// Record format (version 1). A record is the event plus `seq` (1, 2, 3... with no gaps), `time` (epoch ms by the
// injected clock of the replica that appended it), `prev` (the previous record's `hash`; the first record's prev is
// GENESIS_HASH, 64 zeros) and `hash`:
//
//   hash = lowercase hex of SHA-256( UTF-8( canonical JSON of the record without `hash` ) )
//
// Canonical JSON (RFC 8785 JCS for the values a record can hold): object keys sorted by UTF-16 code units at
// every level, no whitespace, strings and numbers as ECMAScript JSON.stringify writes them; absent optional
// fields are left out (never written as null); arrays keep their order. For example:
//   {"actor":"admin:alice","details":{"count":3,"reason":"compromised"},"prev":"000…0","seq":1,
//    "subject":"task-42","time":1700000000000,"type":"task.revoked"}
// Strings must be well-formed Unicode (no lone surrogates), so that every store returns the bytes it was given.
//
// Secrets never enter the trail: append refuses any string that looks like one of Writ's bearer secrets (join
// tokens, admin tokens, JWTs, PEM private keys) with a TypeError; callers record `hashSecret(value)` instead.

import { createHash } from 'node:crypto';
import { z } from 'zod';
import { WritError } from '../errors.ts';

export const GENESIS_HASH = '0'.repeat(64);

export type AuditDecision = 'allow' | 'deny';
export type AuditDetailValue = string | number | boolean | null | string[];
export type AuditDetails = Record<string, AuditDetailValue>;

/** What a caller appends. */
export interface AuditEvent {
  /** Dotted lowercase name: `svid.issued`, `credential.revoked`, `admin.login.failed`... */
  type: string;
  /** Who acted, `<kind>:<id>`: `workload:spiffe://…`, `admin:alice`, `system:worker`. */
  actor: string;
  /** What the event is about: a SPIFFE ID, a task, a credential id, an account name. */
  subject?: string | undefined;
  decision?: AuditDecision | undefined;
  /** Ids of the policies behind the decision. */
  policies?: string[] | undefined;
  /** Small flat facts; secrets only as hashSecret(...). */
  details?: AuditDetails | undefined;
}

export interface AuditRecord {
  seq: number;
  time: number;
  type: string;
  actor: string;
  subject?: string;
  decision?: AuditDecision;
  policies?: string[];
  details?: AuditDetails;
  prev: string;
  hash: string;
}

/** The newest record's position and hash (seq 0 and GENESIS_HASH for an empty trail): a checkpoint to keep. */
export interface AuditHead {
  seq: number;
  hash: string;
}

export interface AuditPageRequest {
  /** Records after this seq (exclusive); from the oldest retained when absent. */
  after?: number | undefined;
  /** 1..1000. */
  limit: number;
}

export interface AuditPage {
  /** Oldest first. */
  records: AuditRecord[];
  /** Pass as `after` for the next page; present when the page is full. */
  next?: number;
}

export interface AuditVerifyRange {
  /** First seq to check (default: 1, or the oldest retained record when the trail is trimmed). */
  from?: number | undefined;
  /** Last seq to check (default: the head). */
  to?: number | undefined;
}

export interface AuditVerifyResult {
  valid: boolean;
  /** Records whose content and link were checked before the first break (or all of them). */
  checked: number;
  /** The first seq at which the chain does not hold: altered, out of place or missing. */
  brokenAt?: number;
  reason?: string;
}

export interface AuditLog {
  readonly kind: 'memory' | 'redis';
  /**
   * Appends one event as the next record of the single chain (whichever replica appends). Invalid events and
   * events carrying something that looks like a secret: TypeError. Store failures: ERR_STORE_UNAVAILABLE.
   */
  append(event: AuditEvent): Promise<AuditRecord>;
  /** Records oldest first. A bad `after` or `limit`: WritError invalid_request. */
  page(request: AuditPageRequest): Promise<AuditPage>;
  /** Recomputes the chain over the range and names its first broken link. */
  verify(range?: AuditVerifyRange): Promise<AuditVerifyResult>;
  head(): Promise<AuditHead>;
}

// ---- secrets

/** The form in which a secret may appear in the trail: `sha256:<hex>`. */
export function hashSecret(value: string): string {
  if (typeof value !== 'string' || value === '') throw new TypeError('hashSecret needs a non-empty string');
  return `sha256:${createHash('sha256').update(value, 'utf8').digest('hex')}`;
}

const SECRET_SHAPES: readonly [RegExp, string][] = [
  [/writ_jt_/i, 'a join token'],
  [/writ_admin_/i, 'an admin token'],
  // a compact JWS/JWE: a base64url JSON header, then at least two more dot-separated parts
  [/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\./, 'a JWT'],
  [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, 'a private key'],
];

/** The kind of secret `value` looks like, or null. */
export function secretShape(value: string): string | null {
  for (const [pattern, kind] of SECRET_SHAPES) if (pattern.test(value)) return kind;
  return null;
}

// ---- validation of what callers append (caller mistakes: TypeError; messages name fields, never values)

export const AUDIT_LIMITS = {
  type: 64,
  actor: 2048,
  subject: 2048,
  policies: 64,
  policy: 256,
  details: 32,
  detailString: 2048,
  detailArray: 64,
} as const;

const TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const ACTOR_PATTERN = /^[a-z][a-z0-9_]*:\S+$/;
export const DETAIL_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const LONE_SURROGATE = /\p{Cs}/u;

function checkString(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string') throw new TypeError(`audit ${field} must be a string`);
  if (value.length === 0 || value.length > max) {
    throw new TypeError(`audit ${field} must have 1 to ${max} characters`);
  }
  if (LONE_SURROGATE.test(value)) throw new TypeError(`audit ${field} is not well-formed Unicode`);
  const shape = secretShape(value);
  if (shape !== null) {
    throw new TypeError(`audit ${field} looks like ${shape}; record hashSecret(value) instead`);
  }
  return value;
}

function checkDetailValue(field: string, value: unknown): AuditDetailValue {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`audit ${field} must be a finite number`);
    return value;
  }
  if (typeof value === 'string') {
    if (value === '') return value;
    return checkString(field, value, AUDIT_LIMITS.detailString);
  }
  if (Array.isArray(value)) {
    if (value.length > AUDIT_LIMITS.detailArray) {
      throw new TypeError(`audit ${field} has more than ${AUDIT_LIMITS.detailArray} items`);
    }
    return value.map((item, i) => checkString(`${field}[${i}]`, item, AUDIT_LIMITS.detailString));
  }
  throw new TypeError(`audit ${field} must be a string, number, boolean, null or string array`);
}

/** A validated copy of the event with absent fields left out; TypeError when it is not acceptable. */
export function checkEvent(event: AuditEvent): Omit<AuditRecord, 'seq' | 'time' | 'prev' | 'hash'> {
  if (typeof event !== 'object' || event === null) throw new TypeError('audit event must be an object');
  const type = checkString('type', event.type, AUDIT_LIMITS.type);
  if (!TYPE_PATTERN.test(type)) throw new TypeError(`audit type must match ${TYPE_PATTERN}`);
  const actor = checkString('actor', event.actor, AUDIT_LIMITS.actor);
  if (!ACTOR_PATTERN.test(actor)) throw new TypeError('audit actor must be `<kind>:<id>`');
  const out: Omit<AuditRecord, 'seq' | 'time' | 'prev' | 'hash'> = { type, actor };
  if (event.subject !== undefined) out.subject = checkString('subject', event.subject, AUDIT_LIMITS.subject);
  if (event.decision !== undefined) {
    if (event.decision !== 'allow' && event.decision !== 'deny') {
      throw new TypeError('audit decision must be allow or deny');
    }
    out.decision = event.decision;
  }
  if (event.policies !== undefined) {
    if (!Array.isArray(event.policies) || event.policies.length > AUDIT_LIMITS.policies) {
      throw new TypeError(`audit policies must be an array of at most ${AUDIT_LIMITS.policies} ids`);
    }
    out.policies = event.policies.map((p, i) => checkString(`policies[${i}]`, p, AUDIT_LIMITS.policy));
  }
  if (event.details !== undefined) {
    const details = event.details;
    if (typeof details !== 'object' || details === null || Array.isArray(details)) {
      throw new TypeError('audit details must be an object');
    }
    const entries = Object.entries(details);
    if (entries.length > AUDIT_LIMITS.details) {
      throw new TypeError(`audit details has more than ${AUDIT_LIMITS.details} keys`);
    }
    const copy: AuditDetails = {};
    for (const [key, value] of entries) {
      if (!DETAIL_KEY_PATTERN.test(key))
        throw new TypeError(`audit details key must match ${DETAIL_KEY_PATTERN}`);
      copy[key] = checkDetailValue(`details.${key}`, value);
    }
    out.details = copy;
  }
  return out;
}

// ---- the canonical form and the hash

type Canonical =
  | string
  | number
  | boolean
  | null
  | readonly Canonical[]
  | { readonly [k: string]: Canonical };

/** RFC 8785 (JCS) for strings, finite numbers, booleans, null, arrays and plain objects. */
export function canonicalJson(value: Canonical | undefined): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no form for a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((item: Canonical) => canonicalJson(item)).join(',')}]`;
  if (typeof value === 'object') {
    const object = value as { readonly [k: string]: Canonical | undefined };
    const keys = Object.keys(object)
      .filter((k) => object[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(object[k])}`).join(',')}}`;
  }
  throw new TypeError('canonical JSON has no form for this value');
}

/** The hash of a record: SHA-256 over the canonical JSON of every field but `hash`. */
export function recordHash(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...content } = record;
  return createHash('sha256')
    .update(canonicalJson(content as unknown as Canonical), 'utf8')
    .digest('hex');
}

/** Builds the next record of a chain whose head is `head`. */
export function sealRecord(
  event: Omit<AuditRecord, 'seq' | 'time' | 'prev' | 'hash'>,
  head: AuditHead,
  time: number,
): AuditRecord {
  const unsealed = { ...event, seq: head.seq + 1, time, prev: head.hash };
  return { ...unsealed, hash: recordHash(unsealed) };
}

// ---- records read back (stored data is never trusted: a record that does not parse is a broken link)

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const detailValue = z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.string())]);

export const auditRecordSchema = z.strictObject({
  seq: z.number().int().positive(),
  time: z.number().int(),
  type: z.string(),
  actor: z.string(),
  subject: z.string().optional(),
  decision: z.enum(['allow', 'deny']).optional(),
  policies: z.array(z.string()).optional(),
  details: z.record(z.string(), detailValue).optional(),
  prev: hex64,
  hash: hex64,
});

/** A record as parsed from storage, dropping nothing and adding nothing. */
export function parseAuditRecord(value: unknown): AuditRecord | null {
  const parsed = auditRecordSchema.safeParse(value);
  if (!parsed.success) return null;
  const r = parsed.data;
  const record: AuditRecord = {
    seq: r.seq,
    time: r.time,
    type: r.type,
    actor: r.actor,
    prev: r.prev,
    hash: r.hash,
  };
  if (r.subject !== undefined) record.subject = r.subject;
  if (r.decision !== undefined) record.decision = r.decision;
  if (r.policies !== undefined) record.policies = r.policies;
  if (r.details !== undefined) record.details = r.details;
  return record;
}

// ---- paging

export const MAX_AUDIT_PAGE = 1000;

export function checkPageRequest(request: AuditPageRequest): { after: number; limit: number } {
  const { after = 0, limit } = request;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE) {
    throw new WritError('invalid_request', `limit must be an integer from 1 to ${MAX_AUDIT_PAGE}`);
  }
  if (!Number.isSafeInteger(after) || after < 0) {
    throw new WritError('invalid_request', 'after must be a non-negative integer');
  }
  return { after, limit };
}

export function toPage(records: AuditRecord[], limit: number): AuditPage {
  const last = records.at(-1);
  return records.length === limit && last !== undefined ? { records, next: last.seq } : { records };
}

// ---- the chain check, over whatever an adapter stores

/**
 * One stored slot as read back: its position (seq) and the record, or why it cannot be read. `derived`: the
 * storage does not keep the record's hash (the compact Redis format): `record.hash` was computed from the
 * record itself, so only the next record's `prev` (or the head, for the newest) vouches for its content.
 */
export type StoredSlot =
  | { position: number; record: AuditRecord; derived?: boolean }
  | { position: number; problem: string };

/** What verifyChain reads; each adapter maps its storage onto this. */
export interface ChainSource {
  /** Positions of the oldest and newest stored slots; null when nothing is stored. */
  bounds(): Promise<{ oldest: number; newest: number } | null>;
  head(): Promise<AuditHead>;
  /** Up to `limit` stored slots at positions >= `from`, in position order. */
  read(from: number, limit: number): Promise<StoredSlot[]>;
}

const VERIFY_BATCH = 500;

function checkBound(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
    throw new WritError('invalid_request', `${name} must be a positive integer`);
  }
}

/**
 * Recomputes the chain over `range`. Checks, for every seq in order: the record is there and readable, its seq
 * field is its position, its prev is the previous record's hash (genesis for seq 1; for the first record of a
 * range starting later, the link is checked when the record before it is readable), and its hash matches its
 * content (stored hashes; a hash that is not stored is checked by the next link, see StoredSlot). Over the
 * whole trail it also checks that the head (written with every append) names the newest
 * record: truncating the trail or dropping the head is a break too.
 *
 * @param trimmed the trail is trimmed (MAXLEN): without `from`, checking starts at the oldest retained record
 *   and its own link backwards is taken as given.
 */
export async function verifyChain(
  source: ChainSource,
  range: AuditVerifyRange = {},
  trimmed = false,
): Promise<AuditVerifyResult> {
  checkBound('from', range.from);
  checkBound('to', range.to);
  // Bounds before the head: appends write both at once, so a newest slot beyond the head is not a race.
  const bounds = await source.bounds();
  const head = await source.head();
  let checked = 0;
  const broken = (brokenAt: number, reason: string): AuditVerifyResult => ({
    valid: false,
    checked,
    brokenAt,
    reason,
  });
  if (bounds !== null && bounds.newest > head.seq) {
    return broken(head.seq + 1, `record ${head.seq + 1} is beyond the chain head (the head was reset)`);
  }
  let from = range.from ?? 1;
  if (range.from === undefined && trimmed && bounds !== null) from = Math.max(from, bounds.oldest);
  const last = Math.min(range.to ?? head.seq, head.seq);
  if (from > last) return { valid: true, checked };

  /** The record at `position` when it is stored and readable. */
  const readAt = async (position: number): Promise<AuditRecord | null> => {
    const [slot] = await source.read(position, 1);
    return slot?.position === position && 'record' in slot ? slot.record : null;
  };
  /**
   * Whether `hash` (the computed hash of the record at `position`) is what the chain names next: the prev of
   * the record after it, or the head for the newest record.
   */
  const linkedForward = async (position: number, hash: string): Promise<boolean> => {
    if (position === head.seq) return hash === head.hash;
    return (await readAt(position + 1))?.prev === hash;
  };
  /**
   * A record whose hash is not stored is vouched for by the next link only. When that link fails, either the
   * record was altered or the next record's prev was: the next record is intact exactly when it links forward
   * itself, so the break is named at the record that was changed.
   */
  const brokenLink = async (at: number, record: AuditRecord, previousDerived: boolean) => {
    if (previousDerived && (await linkedForward(at, recordHash(record)))) {
      checked--;
      return broken(at - 1, 'hash does not match the record content');
    }
    return broken(
      at,
      at === 1
        ? 'prev of the first record is not the genesis hash'
        : `prev is not the hash of record ${at - 1}`,
    );
  };

  let expectedPrev: string | null = GENESIS_HASH;
  let previousDerived = false;
  if (from > 1) {
    const [anchor] = await source.read(from - 1, 1);
    expectedPrev = anchor?.position === from - 1 && 'record' in anchor ? anchor.record.hash : null;
    // The anchor lies outside the range: a failed link to it is the range's first record's break.
  }
  let next = from;
  let lastDerived = false;
  while (next <= last) {
    const slots = await source.read(next, Math.min(VERIFY_BATCH, last - next + 1));
    if (slots.length === 0) return broken(next, `record ${next} is missing`);
    for (const slot of slots) {
      if (next > last) break;
      if (slot.position !== next) return broken(next, `record ${next} is missing`);
      if ('problem' in slot) return broken(next, slot.problem);
      const record = slot.record;
      if (record.seq !== next) return broken(next, 'the seq field does not match the record position');
      if (expectedPrev !== null && record.prev !== expectedPrev) {
        return brokenLink(next, record, previousDerived);
      }
      if (slot.derived !== true && recordHash(record) !== record.hash) {
        return broken(next, 'hash does not match the record content');
      }
      expectedPrev = record.hash;
      previousDerived = slot.derived === true;
      lastDerived = previousDerived;
      checked++;
      next++;
    }
  }
  if (last === head.seq) {
    if (expectedPrev !== head.hash) {
      if (lastDerived) checked--; // its content is vouched for by the head alone
      return broken(head.seq, `record ${head.seq} is not the one the chain head names`);
    }
  } else if (lastDerived && expectedPrev !== null) {
    // The range's last record vouches for nothing by itself: check it against the link that follows it.
    const following = await readAt(last + 1);
    if (following === null) return broken(last + 1, `record ${last + 1} is missing or malformed`);
    if (following.prev !== expectedPrev) {
      next = last + 1;
      return brokenLink(last + 1, following, true);
    }
  }
  return { valid: true, checked };
}
