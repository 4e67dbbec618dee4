// In-memory CredentialStore for dev mode and tests: the Redis adapter's contract, state lost on exit.
//
// Every method runs to completion without awaiting, so each is atomic on the single JS thread. Records are
// dropped at the same moments as in Redis: a credential at expiresAt + retention, a task at
// max(deadline, latest credential expiry) + retention, a join token at its expiry. Reads skip dropped
// records; each write also sweeps a bounded number of them so that memory does not grow forever.
// Stored objects are copied in and out: callers never hold a reference into the store.
//
// Lifecycle: the revocation feed is an in-memory list with Redis-style ids `<ms>-<seq>` (the injected clock's ms,
// a sequence within one ms; never going backwards). Listings order and page exactly as the Redis adapter (the
// same listing keys and paging loop, src/store/shared.ts). A fan-out visits a task's credentials in the Redis
// zset order (expiresAt, then id) with an index cursor kept on the task.

import { randomUUID } from 'node:crypto';
import { WritError } from '../../errors.ts';
import {
  assertBatchSize,
  assertBlockMs,
  assertEpoch,
  assertIssuance,
  assertLimit,
  assertReason,
  assertSequenceFloor,
  assertSequenceName,
  assertTaskEnd,
  compareFeedPositions,
  compareKeys,
  credentialFilterNarrows,
  credentialKey,
  decodeCursor,
  type Loaded,
  MAX_FEED_READ,
  matchesCredential,
  matchesTask,
  parseFeedPosition,
  scanPage,
  sliceAfter,
  taskKey,
  WAIT_COUNT,
} from '../shared.ts';
import {
  type Clock,
  type CredentialFilter,
  type CredentialRecord,
  type CredentialStore,
  type CredentialView,
  type JoinTokenRecord,
  type Page,
  type PageRequest,
  type RecordIssuanceResult,
  type RegistrationEntry,
  type RegistrationEntryInput,
  type RevocationEvent,
  seconds,
  systemClock,
  type TaskEnd,
  type TaskFilter,
  type TaskInit,
  type TaskRecord,
} from '../types.ts';

export interface MemoryStoreOptions {
  clock?: Clock;
  /** Seconds a credential or task record is kept after it expires; default 3600. */
  retentionSeconds?: number;
}

/** Records examined per map on each write; more than one write adds, so the sweep keeps up. */
const SWEEP_BUDGET = 16;

interface TaskSlot {
  task: TaskRecord;
  credentials: Map<string, CredentialRecord>;
  dropAt: number;
  /** Set when the task ends: the next credential index to visit, and whether every one was visited. */
  fanOut?: { cursor: number; done: boolean };
}

type FeedPosition = [bigint, bigint];

interface FeedEntry {
  position: FeedPosition;
  event: RevocationEvent;
}

const EPHEMERAL_SCOPE = /^[a-z0-9_]{1,32}$/;

function assertEphemeral(scope: string, key: string): void {
  if (!EPHEMERAL_SCOPE.test(scope)) throw new TypeError('invalid ephemeral scope');
  if (typeof key !== 'string' || key.length === 0 || key.length > 256)
    throw new TypeError('invalid ephemeral key');
}

export class MemoryStore implements CredentialStore {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #retention: number;
  readonly #entries = new Map<string, RegistrationEntry>();
  readonly #joinTokens = new Map<string, JoinTokenRecord>();
  readonly #tasks = new Map<string, TaskSlot>();
  /** Credential id -> task id, for lookups without the task. */
  readonly #credentialIndex = new Map<string, { task: string; dropAt: number }>();
  readonly #keyMaterial = new Map<string, string>();
  /** The revocation feed, oldest first. */
  #feed: FeedEntry[] = [];
  /** The last feed id handed out (kept when the feed is trimmed, as a Redis stream keeps its last id). */
  #lastPosition: [number, number] = [0, 0];
  /** Woken on each append and on close. */
  readonly #feedWaiters = new Set<() => void>();
  #closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    const retention = opts.retentionSeconds ?? 3600;
    if (!Number.isSafeInteger(retention) || retention < 0) {
      throw new TypeError('retentionSeconds must be a non-negative integer');
    }
    this.#clock = opts.clock ?? systemClock;
    this.#retention = retention;
  }

  /** Live record counts (dropped records awaiting the sweep included), for metrics and tests. */
  size(): { entries: number; joinTokens: number; tasks: number; credentials: number } {
    let credentials = 0;
    for (const slot of this.#tasks.values()) credentials += slot.credentials.size;
    return {
      entries: this.#entries.size,
      joinTokens: this.#joinTokens.size,
      tasks: this.#tasks.size,
      credentials,
    };
  }

  // ---- registration entries

  async createEntry(input: RegistrationEntryInput): Promise<RegistrationEntry> {
    this.#open();
    if (this.#findDuplicate(input, undefined)) throw new WritError('ERR_ENTRY_CONFLICT');
    const now = seconds(this.#clock);
    const entry = buildEntry(randomUUID(), input, now, now);
    this.#entries.set(entry.id, entry);
    return structuredClone(entry);
  }

  async getEntry(id: string): Promise<RegistrationEntry | null> {
    this.#open();
    const entry = this.#entries.get(id);
    return entry === undefined ? null : structuredClone(entry);
  }

  async listEntries(): Promise<RegistrationEntry[]> {
    this.#open();
    return [...this.#entries.values()].sort(byCreation).map((entry) => structuredClone(entry));
  }

  async updateEntry(id: string, input: RegistrationEntryInput): Promise<RegistrationEntry | null> {
    this.#open();
    const existing = this.#entries.get(id);
    if (existing === undefined) return null;
    if (this.#findDuplicate(input, id)) throw new WritError('ERR_ENTRY_CONFLICT');
    const entry = buildEntry(id, input, existing.createdAt, seconds(this.#clock));
    this.#entries.set(id, entry);
    return structuredClone(entry);
  }

  async deleteEntry(id: string): Promise<boolean> {
    this.#open();
    return this.#entries.delete(id);
  }

  /** Another entry with the same SPIFFE ID and the same set of selectors (order and repeats ignored). */
  #findDuplicate(input: RegistrationEntryInput, self: string | undefined): boolean {
    const wanted = new Set(input.selectors);
    for (const entry of this.#entries.values()) {
      if (entry.id === self || entry.spiffeId !== input.spiffeId) continue;
      const theirs = new Set(entry.selectors);
      if (theirs.size === wanted.size && [...theirs].every((s) => wanted.has(s))) return true;
    }
    return false;
  }

  // ---- join tokens

  async putJoinToken(hash: string, record: JoinTokenRecord): Promise<void> {
    this.#open();
    this.#sweep();
    this.#joinTokens.set(hash, structuredClone(record));
  }

  async consumeJoinToken(hash: string): Promise<JoinTokenRecord | null> {
    this.#open();
    const record = this.#joinTokens.get(hash);
    if (record === undefined) return null;
    this.#joinTokens.delete(hash);
    return seconds(this.#clock) >= record.expiresAt ? null : record;
  }

  // ---- credentials and tasks

  async recordIssuance(credential: CredentialRecord, init: TaskInit): Promise<RecordIssuanceResult> {
    this.#open();
    assertIssuance(credential, init);
    this.#sweep();
    const now = seconds(this.#clock);
    const existing = this.#liveSlot(init.id, now);
    const created = existing === undefined;
    const slot: TaskSlot = existing ?? {
      task: {
        id: init.id,
        owner: init.owner,
        origin: init.origin,
        createdAt: now,
        deadline: init.deadline,
        status: 'active',
      },
      credentials: new Map(),
      dropAt: init.deadline + this.#retention,
    };
    const task = slot.task;
    const view = (): TaskRecord => taskView(task, now);

    if (task.status !== 'active' || now >= task.deadline)
      return { ok: false, reason: 'task_ended', task: view() };
    const mayJoin = task.owner === init.owner || (task.origin === 'attestor' && init.origin === 'attestor');
    if (!created && !mayJoin) return { ok: false, reason: 'task_mismatch', task: view() };
    if (credential.expiresAt > task.deadline) return { ok: false, reason: 'deadline', task: view() };

    if (created) this.#tasks.set(init.id, slot);
    for (const [id, old] of slot.credentials) {
      if (now >= old.expiresAt + this.#retention) slot.credentials.delete(id);
    }
    // A recorded credential is never rewritten: a retry is idempotent and cannot undo a revocation.
    if (!slot.credentials.has(credential.id))
      slot.credentials.set(credential.id, structuredClone(credential));
    slot.dropAt = Math.max(slot.dropAt, credential.expiresAt + this.#retention);
    this.#credentialIndex.set(credential.id, {
      task: init.id,
      dropAt: credential.expiresAt + this.#retention,
    });
    return { ok: true, task: view(), created };
  }

  async getCredential(id: string, task?: string): Promise<CredentialView | null> {
    this.#open();
    const now = seconds(this.#clock);
    const taskId = task ?? this.#credentialIndex.get(id)?.task;
    if (taskId === undefined) return null;
    const slot = this.#liveSlot(taskId, now);
    const credential = slot?.credentials.get(id);
    if (slot === undefined || credential === undefined || now >= credential.expiresAt + this.#retention)
      return null;
    return { credential: structuredClone(credential), task: taskView(slot.task, now) };
  }

  async getTask(id: string): Promise<TaskRecord | null> {
    this.#open();
    const now = seconds(this.#clock);
    const slot = this.#liveSlot(id, now);
    return slot === undefined ? null : taskView(slot.task, now);
  }

  #liveSlot(id: string, now: number): TaskSlot | undefined {
    const slot = this.#tasks.get(id);
    if (slot === undefined || now < slot.dropAt) return slot;
    this.#tasks.delete(id);
    return undefined;
  }

  // ---- lifecycle: ending tasks, revoking credentials, listings

  async endTask(id: string, end: TaskEnd): Promise<{ ended: boolean; task: TaskRecord } | null> {
    this.#open();
    assertTaskEnd(end);
    const now = seconds(this.#clock);
    const slot = this.#liveSlot(id, now);
    if (slot === undefined) return null;
    const task = slot.task;
    if (task.status !== 'active') return { ended: false, task: taskView(task, now) };
    task.status = end.status;
    task.endedAt = end.at;
    task.endReason = end.reason;
    slot.fanOut = { cursor: 0, done: false };
    let expiresAt: number | undefined;
    for (const c of slot.credentials.values()) expiresAt = Math.max(expiresAt ?? c.expiresAt, c.expiresAt);
    this.#append({
      kind: 'task',
      task: id,
      expiresAt: expiresAt ?? task.deadline,
      reason: end.reason,
      revokedAt: end.at,
    });
    return { ended: true, task: taskView(task, now) };
  }

  async fanOutTask(id: string, batchSize: number): Promise<{ revoked: number; done: boolean }> {
    this.#open();
    assertBatchSize(batchSize);
    const now = seconds(this.#clock);
    const slot = this.#liveSlot(id, now);
    if (slot === undefined) return { revoked: 0, done: true };
    const { task, fanOut } = slot;
    if (task.status === 'active' || fanOut === undefined) return { revoked: 0, done: false };
    if (fanOut.done) return { revoked: 0, done: true };
    // The Redis zset order: expiresAt, then id. An ended task's credentials never change, so the index holds.
    const ordered = [...slot.credentials.values()].sort(
      (a, b) => a.expiresAt - b.expiresAt || compareKeys(a.id, b.id),
    );
    let revoked = 0;
    const batch = ordered.slice(fanOut.cursor, fanOut.cursor + batchSize);
    for (const c of batch) {
      if (c.revokedAt !== undefined || c.expiresAt <= now) continue;
      c.revokedAt = task.endedAt ?? now;
      c.revokedReason = task.endReason ?? task.status;
      this.#appendCredentialEvent(c);
      revoked++;
    }
    fanOut.cursor += batch.length;
    if (fanOut.cursor >= ordered.length) fanOut.done = true;
    return { revoked, done: fanOut.done };
  }

  async revokeCredential(
    id: string,
    reason: string,
    at: number,
    task?: string,
  ): Promise<{ revoked: boolean; view: CredentialView } | null> {
    this.#open();
    assertReason(reason);
    assertEpoch('at', at);
    const now = seconds(this.#clock);
    const taskId = task ?? this.#credentialIndex.get(id)?.task;
    if (taskId === undefined) return null;
    const slot = this.#liveSlot(taskId, now);
    const credential = slot?.credentials.get(id);
    if (slot === undefined || credential === undefined || now >= credential.expiresAt + this.#retention)
      return null;
    const taskRecord = taskView(slot.task, now);
    const live = credential.revokedAt === undefined && credential.expiresAt > now;
    if (!live || taskRecord.status !== 'active') {
      return { revoked: false, view: { credential: structuredClone(credential), task: taskRecord } };
    }
    credential.revokedAt = at;
    credential.revokedReason = reason;
    this.#appendCredentialEvent(credential);
    return { revoked: true, view: { credential: structuredClone(credential), task: taskRecord } };
  }

  async listCredentials(filter: CredentialFilter, page: PageRequest): Promise<Page<CredentialView>> {
    this.#open();
    assertLimit(page.limit);
    const after = decodeCursor(page.cursor, 'credential');
    const now = seconds(this.#clock);
    const byKey = new Map<string, { slot: TaskSlot; credential: CredentialRecord }>();
    const slots =
      filter.task === undefined
        ? [...this.#tasks.values()]
        : [this.#tasks.get(filter.task)].filter((slot) => slot !== undefined);
    for (const slot of slots) {
      if (now >= slot.dropAt) continue;
      for (const credential of slot.credentials.values())
        byKey.set(credentialKey(credential), { slot, credential });
    }
    const sorted = [...byKey.keys()].sort((a, b) => compareKeys(b, a));
    const keep = credentialFilterNarrows(filter)
      ? (view: CredentialView) => matchesCredential(filter, view, now)
      : undefined;
    const source = {
      fetch: async (from: string | undefined, count: number) => sliceAfter(sorted, from, count),
      read: async (keys: string[]) =>
        keys.map((key): Loaded<CredentialView> => {
          const found = byKey.get(key);
          if (found === undefined) return 'gone';
          const { slot, credential } = found;
          if (now >= credential.expiresAt + this.#retention) return 'hidden';
          return { credential: structuredClone(credential), task: taskView(slot.task, now) };
        }),
    };
    return scanPage(source, after, page.limit, keep);
  }

  async listTasks(filter: TaskFilter, page: PageRequest): Promise<Page<TaskRecord>> {
    this.#open();
    assertLimit(page.limit);
    const after = decodeCursor(page.cursor, 'task');
    const now = seconds(this.#clock);
    const byKey = new Map<string, TaskSlot>();
    for (const slot of this.#tasks.values()) {
      if (now < slot.dropAt) byKey.set(taskKey(slot.task), slot);
    }
    const sorted = [...byKey.keys()].sort((a, b) => compareKeys(b, a));
    const narrows = filter.status !== undefined || filter.owner !== undefined;
    const source = {
      fetch: async (from: string | undefined, count: number) => sliceAfter(sorted, from, count),
      read: async (keys: string[]) =>
        keys.map((key): Loaded<TaskRecord> => {
          const slot = byKey.get(key);
          return slot === undefined ? 'gone' : taskView(slot.task, now);
        }),
    };
    return scanPage(source, after, page.limit, narrows ? (task) => matchesTask(filter, task) : undefined);
  }

  async countTaskCredentials(id: string): Promise<number> {
    this.#open();
    const now = seconds(this.#clock);
    const slot = this.#liveSlot(id, now);
    if (slot === undefined) return 0;
    let count = 0;
    for (const c of slot.credentials.values()) if (now < c.expiresAt + this.#retention) count++;
    return count;
  }

  async pendingTasks(now: number, limit: number): Promise<{ ending: string[]; overdue: string[] }> {
    this.#open();
    assertEpoch('now', now);
    assertLimit(limit);
    const clockNow = seconds(this.#clock);
    const ending: { id: string; at: number }[] = [];
    const overdue: { id: string; at: number }[] = [];
    for (const slot of this.#tasks.values()) {
      if (clockNow >= slot.dropAt) continue;
      const t = slot.task;
      if (t.status !== 'active' && slot.fanOut?.done === false) ending.push({ id: t.id, at: t.endedAt ?? 0 });
      if (t.status === 'active' && t.deadline <= now) overdue.push({ id: t.id, at: t.deadline });
    }
    // The Redis zset order: score, then id.
    const ids = (list: { id: string; at: number }[]) =>
      list
        .sort((a, b) => a.at - b.at || compareKeys(a.id, b.id))
        .slice(0, limit)
        .map((entry) => entry.id);
    return { ending: ids(ending), overdue: ids(overdue) };
  }

  // ---- the revocation feed

  async readRevocations(since: string | undefined, limit: number): Promise<RevocationEvent[]> {
    this.#open();
    assertLimit(limit, MAX_FEED_READ);
    const from = since === undefined ? undefined : parseFeedPosition(since);
    return this.#eventsAfter(from, limit);
  }

  async waitForRevocations(since: string, blockMs: number, signal?: AbortSignal): Promise<RevocationEvent[]> {
    this.#open();
    assertBlockMs(blockMs);
    const from: FeedPosition =
      since === '$'
        ? [BigInt(this.#lastPosition[0]), BigInt(this.#lastPosition[1])]
        : parseFeedPosition(since);
    const ready = this.#eventsAfter(from, WAIT_COUNT);
    if (ready.length > 0 || blockMs === 0 || signal?.aborted) return ready;
    return new Promise<RevocationEvent[]>((resolve, reject) => {
      const finish = (events: RevocationEvent[] | Error) => {
        clearTimeout(timer);
        this.#feedWaiters.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        if (events instanceof Error) reject(events);
        else resolve(events);
      };
      const wake = () => {
        if (this.#closed) {
          finish(
            new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('the store is closed') }),
          );
          return;
        }
        const events = this.#eventsAfter(from, WAIT_COUNT);
        if (events.length > 0) finish(events);
      };
      const onAbort = () => finish([]);
      const timer = setTimeout(() => finish([]), blockMs);
      this.#feedWaiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async lastRevocationId(): Promise<string> {
    this.#open();
    return this.#feed.at(-1)?.event.id ?? '0-0';
  }

  async trimRevocations(before: number): Promise<void> {
    this.#open();
    assertEpoch('before', before);
    const min = BigInt(Math.max(0, before) * 1000);
    this.#feed = this.#feed.filter((entry) => entry.position[0] >= min);
  }

  #eventsAfter(from: FeedPosition | undefined, limit: number): RevocationEvent[] {
    // The feed is ordered by position: binary-search the first entry after `from` (a tail reader calls this
    // on every append, so a linear scan would make a busy feed quadratic).
    let lo = 0;
    if (from !== undefined) {
      let hi = this.#feed.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (compareFeedPositions(this.#feed[mid]!.position, from) <= 0) lo = mid + 1;
        else hi = mid;
      }
    }
    return this.#feed.slice(lo, lo + limit).map((entry) => ({ ...entry.event }));
  }

  #appendCredentialEvent(c: CredentialRecord): void {
    this.#append({
      kind: 'credential',
      credential: c.id,
      credentialType: c.type,
      task: c.task,
      expiresAt: c.expiresAt,
      reason: c.revokedReason ?? '',
      revokedAt: c.revokedAt ?? 0,
    });
  }

  /** Appends an event under the next id: the clock's ms, or the last ms with the next sequence (as XADD *). */
  #append(event: Omit<RevocationEvent, 'id'>): void {
    const ms = Math.floor(this.#clock());
    const [lastMs, lastSeq] = this.#lastPosition;
    this.#lastPosition = ms > lastMs ? [ms, 0] : [lastMs, lastSeq + 1];
    const [m, q] = this.#lastPosition;
    this.#feed.push({ position: [BigInt(m), BigInt(q)], event: { id: `${m}-${q}`, ...event } });
    for (const wake of [...this.#feedWaiters]) wake();
  }

  // ---- shared key material

  // ---- ephemeral state

  readonly #ephemeral = new Map<string, { value: string; expiresAt: number }>();

  #ephemeralKey(kind: 'once' | 'eph' | 'hit', scope: string, key: string): string {
    assertEphemeral(scope, key);
    return `${kind}\u0000${scope}\u0000${key}`;
  }

  #liveEphemeral(k: string): { value: string; expiresAt: number } | undefined {
    const entry = this.#ephemeral.get(k);
    if (entry && entry.expiresAt <= seconds(this.#clock)) {
      this.#ephemeral.delete(k);
      return undefined;
    }
    return entry;
  }

  #pruneEphemeral(): void {
    if (this.#ephemeral.size < 10_000) return;
    const now = seconds(this.#clock);
    for (const [k, v] of this.#ephemeral) if (v.expiresAt <= now) this.#ephemeral.delete(k);
  }

  async markOnce(scope: string, key: string, expiresAt: number): Promise<boolean> {
    this.#open();
    const k = this.#ephemeralKey('once', scope, key);
    if (this.#liveEphemeral(k)) return false;
    this.#pruneEphemeral();
    this.#ephemeral.set(k, { value: '1', expiresAt });
    return true;
  }

  async heldMarks(scope: string, keys: readonly string[]): Promise<boolean[]> {
    this.#open();
    return keys.map((key) => this.#liveEphemeral(this.#ephemeralKey('once', scope, key)) !== undefined);
  }

  async putEphemeral(scope: string, key: string, value: string, expiresAt: number): Promise<void> {
    this.#open();
    this.#pruneEphemeral();
    this.#ephemeral.set(this.#ephemeralKey('eph', scope, key), { value, expiresAt });
  }

  async takeEphemeral(scope: string, key: string): Promise<string | null> {
    this.#open();
    const k = this.#ephemeralKey('eph', scope, key);
    const entry = this.#liveEphemeral(k);
    this.#ephemeral.delete(k);
    return entry?.value ?? null;
  }

  async swapEphemeral(
    scope: string,
    key: string,
    expected: string,
    value: string,
    expiresAt: number,
  ): Promise<boolean> {
    this.#open();
    const k = this.#ephemeralKey('eph', scope, key);
    if (this.#liveEphemeral(k)?.value !== expected) return false;
    this.#ephemeral.set(k, { value, expiresAt });
    return true;
  }

  async getEphemeral(scope: string, key: string): Promise<string | null> {
    this.#open();
    return this.#liveEphemeral(this.#ephemeralKey('eph', scope, key))?.value ?? null;
  }

  async countHit(scope: string, key: string, windowSeconds: number): Promise<number> {
    this.#open();
    const now = seconds(this.#clock);
    const window = Math.floor(now / windowSeconds);
    const k = `${this.#ephemeralKey('hit', scope, key)}\u0000${window}`;
    const entry = this.#liveEphemeral(k);
    const count = (entry ? Number(entry.value) : 0) + 1;
    this.#pruneEphemeral();
    this.#ephemeral.set(k, { value: String(count), expiresAt: (window + 1) * windowSeconds });
    return count;
  }

  async putKeyMaterialIfAbsent(name: string, value: string): Promise<string> {
    this.#open();
    const stored = this.#keyMaterial.get(name);
    if (stored !== undefined) return stored;
    this.#keyMaterial.set(name, value);
    return value;
  }

  async getKeyMaterial(name: string): Promise<string | null> {
    this.#open();
    return this.#keyMaterial.get(name) ?? null;
  }

  async swapKeyMaterial(
    name: string,
    expected: string | null,
    value: string,
    opts: { alsoDelete?: string | undefined } = {},
  ): Promise<boolean> {
    this.#open();
    if (value === '') throw new TypeError('key material cannot be empty');
    if ((this.#keyMaterial.get(name) ?? null) !== expected) return false;
    this.#keyMaterial.set(name, value);
    if (opts.alsoDelete !== undefined && opts.alsoDelete !== name) this.#keyMaterial.delete(opts.alsoDelete);
    return true;
  }

  readonly #sequences = new Map<string, number>();

  async nextSequence(name: string, floor = 0): Promise<number> {
    this.#open();
    assertSequenceName(name);
    assertSequenceFloor(floor);
    const next = Math.max((this.#sequences.get(name) ?? 0) + 1, floor);
    this.#sequences.set(name, next);
    return next;
  }

  async ping(): Promise<void> {
    this.#open();
  }

  /** Stops the store: later calls fail with ERR_STORE_UNAVAILABLE, as with a closed Redis store. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const wake of [...this.#feedWaiters]) wake();
  }

  #open(): void {
    if (this.#closed) {
      throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('the store is closed') });
    }
  }

  #sweep(): void {
    const now = seconds(this.#clock);
    sweepSome(this.#joinTokens, (token) => now >= token.expiresAt);
    sweepSome(this.#credentialIndex, (index) => now >= index.dropAt);
    sweepSome(this.#tasks, (slot) => now >= slot.dropAt);
  }
}

/**
 * Examines up to SWEEP_BUDGET of the oldest-inserted records: drops the dead ones and moves the live ones
 * to the back, so that successive sweeps walk the whole map.
 */
function sweepSome<V>(map: Map<string, V>, dead: (value: V) => boolean): void {
  let budget = Math.min(SWEEP_BUDGET, map.size);
  for (const [key, value] of map) {
    if (budget-- <= 0) break;
    map.delete(key);
    if (!dead(value)) map.set(key, value);
  }
}

function taskView(task: TaskRecord, now: number): TaskRecord {
  const view = structuredClone(task);
  // `expired` is derived: an active task whose deadline has passed has ended, whether or not a job has run.
  if (view.status === 'active' && now >= view.deadline) view.status = 'expired';
  return view;
}

function buildEntry(
  id: string,
  input: RegistrationEntryInput,
  createdAt: number,
  updatedAt: number,
): RegistrationEntry {
  const entry: RegistrationEntry = {
    id,
    spiffeId: input.spiffeId,
    selectors: [...input.selectors],
    createdAt,
    updatedAt,
  };
  if (input.audiences !== undefined) entry.audiences = [...input.audiences];
  if (input.jwtTtl !== undefined) entry.jwtTtl = input.jwtTtl;
  if (input.x509Ttl !== undefined) entry.x509Ttl = input.x509Ttl;
  if (input.taskDeadline !== undefined) entry.taskDeadline = input.taskDeadline;
  return entry;
}

function byCreation(a: RegistrationEntry, b: RegistrationEntry): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
