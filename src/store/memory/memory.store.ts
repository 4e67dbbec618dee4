// In-memory CredentialStore for dev mode and tests: the Redis adapter's contract, state lost on exit.
//
// Every method runs to completion without awaiting, so each is atomic on the single JS thread. Records are
// dropped at the same moments as in Redis: a credential at expiresAt + retention, a task at
// max(deadline, latest credential expiry) + retention, a join token at its expiry. Reads skip dropped
// records; each write also sweeps a bounded number of them so that memory does not grow forever.
// Stored objects are copied in and out: callers never hold a reference into the store.

import { randomUUID } from 'node:crypto';
import { WritError } from '../../errors.ts';
import {
  type Clock,
  type CredentialRecord,
  type CredentialStore,
  type CredentialView,
  type JoinTokenRecord,
  type RecordIssuanceResult,
  type RegistrationEntry,
  type RegistrationEntryInput,
  seconds,
  systemClock,
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

  // ---- shared key material

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

  async ping(): Promise<void> {
    this.#open();
  }

  /** Stops the store: later calls fail with ERR_STORE_UNAVAILABLE, as with a closed Redis store. */
  async close(): Promise<void> {
    this.#closed = true;
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

function assertIssuance(credential: CredentialRecord, task: TaskInit): void {
  if (credential.task !== task.id) throw new TypeError('credential.task must be the id of the task');
  for (const [name, value] of [
    ['credential.issuedAt', credential.issuedAt],
    ['credential.expiresAt', credential.expiresAt],
    ['task.deadline', task.deadline],
  ] as const) {
    if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer (epoch seconds)`);
  }
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
