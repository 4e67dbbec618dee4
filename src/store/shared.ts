// What both store adapters share: argument checks, listing order and cursors, the paging loop, filters, and
// revocation feed positions. Keeping them here makes the two adapters order, page and refuse identically.
import { WritError } from '../errors.ts';
import { credentialStatus } from './status.ts';
import type {
  CredentialFilter,
  CredentialRecord,
  CredentialView,
  Page,
  TaskEnd,
  TaskFilter,
  TaskInit,
  TaskRecord,
} from './types.ts';

/** Largest page of a listing. */
export const MAX_PAGE = 1000;
/** readRevocations caps nothing itself (the HTTP layer does); any positive integer is a valid limit. */
export const MAX_FEED_READ = Number.MAX_SAFE_INTEGER;
/** A filtered page examines at most this many index entries per item asked for, then returns a cursor. */
export const SCAN_FACTOR = 50;
/** Most events one waitForRevocations call returns. */
export const WAIT_COUNT = 1000;
/** Largest fan-out batch. */
export const MAX_BATCH = 10_000;

/** Public reason codes (they appear on the revocation feed). */
export const REASON_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

const EPOCH_MAX = 9_999_999_999; // 10 digits: the listing keys pad times to this width

// ---- argument checks (caller mistakes: TypeError; values a client chose: WritError invalid_request)

export function assertIssuance(credential: CredentialRecord, task: TaskInit): void {
  if (credential.task !== task.id) throw new TypeError('credential.task must be the id of the task');
  for (const [name, value] of [
    ['credential.issuedAt', credential.issuedAt],
    ['credential.expiresAt', credential.expiresAt],
    ['task.deadline', task.deadline],
  ] as const) {
    if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer (epoch seconds)`);
  }
  if (credential.issuedAt < 0 || credential.issuedAt > EPOCH_MAX) {
    throw new TypeError('credential.issuedAt is out of range');
  }
  // `|` separates the parts of a listing key (task ids cannot hold it: see lifecycle/task-id.ts).
  if (credential.id === '' || credential.id.includes('|')) {
    throw new TypeError('credential.id must be non-empty and must not contain "|"');
  }
  if (task.id === '' || task.id.includes('|')) throw new TypeError('task.id must be non-empty, without "|"');
}

export function assertTaskEnd(end: TaskEnd): void {
  if (!['completed', 'expired', 'revoked'].includes(end.status)) {
    throw new TypeError('end.status must be completed, expired or revoked');
  }
  assertReason(end.reason);
  assertEpoch('end.at', end.at);
}

export function assertReason(reason: string): void {
  if (!REASON_PATTERN.test(reason)) throw new TypeError(`reason must match ${REASON_PATTERN}`);
}

export function assertEpoch(name: string, value: number): void {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer (epoch seconds)`);
}

export function assertBatchSize(batchSize: number): void {
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
    throw new TypeError(`batchSize must be an integer from 1 to ${MAX_BATCH}`);
  }
}

/** A page size; it usually comes from a client, hence invalid_request. */
export function assertLimit(limit: number, max = MAX_PAGE): void {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > max) {
    throw new WritError('invalid_request', `limit must be an integer from 1 to ${max}`);
  }
}

export function assertSequenceName(name: string): void {
  if (typeof name !== 'string' || !/^[a-z0-9_-]{1,64}$/.test(name)) {
    throw new TypeError('invalid sequence name');
  }
}

export function assertSequenceFloor(floor: number): void {
  if (!Number.isSafeInteger(floor) || floor < 0) throw new TypeError('invalid sequence floor');
}

export function assertBlockMs(blockMs: number): void {
  if (!Number.isSafeInteger(blockMs) || blockMs < 0 || blockMs > 600_000) {
    throw new TypeError('blockMs must be an integer from 0 to 600000');
  }
}

// ---- listing order: newest first, by a key that is also the Redis index member

const pad = (epoch: number): string => String(epoch).padStart(10, '0');

/**
 * `<issuedAt, 10 digits>:<credential id>`: the listing order of credentials (descending). Credential ids are
 * unique, so the key needs no more (the Redis store finds the task through its id index); the `:` tells it from
 * a task key. Keys written before were `<issuedAt>|<id>|<task id>`: still read, and a cursor made of one still
 * resumes (within one second, such keys sort after the current ones).
 */
export function credentialKey(c: Pick<CredentialRecord, 'issuedAt' | 'id'>): string {
  return `${pad(c.issuedAt)}:${c.id}`;
}

/** `<createdAt, 10 digits>|<task id>`: the listing order of tasks (descending). */
export function taskKey(t: Pick<TaskRecord, 'createdAt' | 'id'>): string {
  return `${pad(t.createdAt)}|${t.id}`;
}

const CREDENTIAL_KEY = /^(\d{10}):([^|]+)$/;
const EARLIER_CREDENTIAL_KEY = /^(\d{10})\|([^|]+)\|([^|]+)$/;
const TASK_KEY = /^(\d{10})\|([^|]+)$/;

/** A credential listing key; `task` only in keys of the earlier form (`<issuedAt>|<id>|<task>`). */
export function parseCredentialKey(
  key: string,
): { issuedAt: number; id: string; task: string | undefined } | null {
  const m = CREDENTIAL_KEY.exec(key);
  if (m !== null) return { issuedAt: Number(m[1]), id: m[2]!, task: undefined };
  const earlier = EARLIER_CREDENTIAL_KEY.exec(key);
  return earlier === null ? null : { issuedAt: Number(earlier[1]), id: earlier[2]!, task: earlier[3]! };
}

export function parseTaskKey(key: string): { createdAt: number; id: string } | null {
  const m = TASK_KEY.exec(key);
  return m === null ? null : { createdAt: Number(m[1]), id: m[2]! };
}

/** Byte order (as Redis compares members), so that both adapters list in exactly the same order. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function encodeCursor(key: string): string {
  return Buffer.from(key).toString('base64url');
}

/** The listing key a cursor resumes after; WritError invalid_request when it is not one of ours. */
export function decodeCursor(cursor: string | undefined, kind: 'credential' | 'task'): string | undefined {
  if (cursor === undefined) return undefined;
  const invalid = () => new WritError('invalid_request', 'invalid cursor');
  if (!/^[A-Za-z0-9_-]{1,1400}$/.test(cursor)) throw invalid();
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (encodeCursor(key) !== cursor) throw invalid();
  const parsed = kind === 'credential' ? parseCredentialKey(key) : parseTaskKey(key);
  if (parsed === null) throw invalid();
  return key;
}

// ---- the paging loop, over any descending sequence of listing keys

export type Loaded<T> = T | 'gone' | 'hidden';

export interface ScanSource<T> {
  /** Up to `count` keys strictly after `after` in descending order (from the top when undefined). */
  fetch(after: string | undefined, count: number): Promise<string[]>;
  /** The items of these keys: 'gone' when the record no longer exists, 'hidden' when it is not to be shown. */
  read(keys: string[]): Promise<Loaded<T>[]>;
  /** Forgets index keys whose records are gone (lazy trimming); optional. */
  drop?(keys: string[]): Promise<void>;
}

/**
 * One page: walks keys after the cursor, newest first, keeping those `keep` accepts, until `limit` items or
 * SCAN_FACTOR × limit keys examined. `next` is given exactly when keys remain after the last one examined,
 * so a filtered page may be short (even empty) and still have a `next`: a page never takes unbounded time.
 */
export async function scanPage<T>(
  source: ScanSource<T>,
  after: string | undefined,
  limit: number,
  keep: ((item: T) => boolean) | undefined,
): Promise<Page<T>> {
  const budget = SCAN_FACTOR * limit;
  const items: T[] = [];
  const gone: string[] = [];
  let scanned = 0;
  let position = after;
  let more = false;
  for (;;) {
    const missing = limit - items.length;
    // Unfiltered: one extra key tells whether another page follows. Filtered: bigger bites.
    const want = Math.min(budget - scanned, keep === undefined ? missing + 1 : Math.max(4 * missing, 100));
    const keys = await source.fetch(position, want);
    const loaded = keys.length === 0 ? [] : await source.read(keys);
    let stopped = false;
    for (let i = 0; i < keys.length; i++) {
      const item = loaded[i];
      const key = keys[i]!;
      scanned++;
      position = key;
      if (item === 'gone') gone.push(key);
      else if (item !== undefined && item !== 'hidden' && (keep === undefined || keep(item)))
        items.push(item);
      if (items.length === limit || scanned >= budget) {
        stopped = true;
        more = i < keys.length - 1 || (keys.length === want && (await source.fetch(position, 1)).length > 0);
        break;
      }
    }
    if (stopped || keys.length < want) break;
  }
  if (gone.length > 0 && source.drop !== undefined) await source.drop(gone);
  return more && position !== undefined ? { items, next: encodeCursor(position) } : { items };
}

/** Keys of a sorted (descending) array strictly after `after`. */
export function sliceAfter(sorted: string[], after: string | undefined, count: number): string[] {
  let start = 0;
  if (after !== undefined) {
    // first index whose key sorts below `after` (binary search on descending order)
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareKeys(sorted[mid]!, after) >= 0) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  return sorted.slice(start, start + count);
}

// ---- filters

/** Path-segment aware: `spiffe://td/a` matches itself and `spiffe://td/a/b`, not `spiffe://td/ab`. */
export function spiffeIdHasPrefix(spiffeId: string, prefix: string): boolean {
  if (spiffeId === prefix) return true;
  return spiffeId.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`);
}

/** Whether a filter needs more than the task (the task alone is answered from the task's own index). */
export function credentialFilterNarrows(filter: CredentialFilter): boolean {
  return (
    filter.spiffeId !== undefined ||
    filter.spiffeIdPrefix !== undefined ||
    filter.attestor !== undefined ||
    filter.status !== undefined
  );
}

export function matchesCredential(filter: CredentialFilter, view: CredentialView, now: number): boolean {
  const c = view.credential;
  return (
    (filter.task === undefined || c.task === filter.task) &&
    (filter.spiffeId === undefined || c.spiffeId === filter.spiffeId) &&
    (filter.spiffeIdPrefix === undefined || spiffeIdHasPrefix(c.spiffeId, filter.spiffeIdPrefix)) &&
    (filter.attestor === undefined || c.attestor === filter.attestor) &&
    (filter.status === undefined || credentialStatus(view, now) === filter.status)
  );
}

export function matchesTask(filter: TaskFilter, task: TaskRecord): boolean {
  return (
    (filter.status === undefined || task.status === filter.status) &&
    (filter.owner === undefined || task.owner === filter.owner)
  );
}

// ---- revocation feed positions: Redis stream ids `<ms>-<seq>`

const U64_MAX = 2n ** 64n - 1n;
export const MAX_STREAM_ID = `${U64_MAX}-${U64_MAX}`;

/** A feed position as [ms, seq]; '0' reads as '0-0'. WritError invalid_request when malformed. */
export function parseFeedPosition(since: string): [bigint, bigint] {
  const m = /^(\d{1,20})(?:-(\d{1,20}))?$/.exec(since);
  const invalid = () => new WritError('invalid_request', 'invalid cursor');
  if (m === null || (m[2] === undefined && since !== '0')) throw invalid();
  const ms = BigInt(m[1]!);
  const seq = BigInt(m[2] ?? '0');
  if (ms > U64_MAX || seq > U64_MAX) throw invalid();
  return [ms, seq];
}

export function formatFeedPosition([ms, seq]: [bigint, bigint]): string {
  return `${ms}-${seq}`;
}

export function compareFeedPositions(a: [bigint, bigint], b: [bigint, bigint]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}
