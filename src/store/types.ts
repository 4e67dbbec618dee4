// The storage contract: every piece of broker state goes through this interface (memory and Redis adapters).
// All times are integer epoch seconds.

export interface RegistrationEntryInput {
  spiffeId: string;
  /** `<attestor>:<key>:<value>`; the entry matches when all of these are among the attested selectors. */
  selectors: string[];
  /** When set, a JWT-SVID's audiences must all be in this list. */
  audiences?: string[] | undefined;
  /** Caps (seconds); the broker's defaults apply when absent. */
  jwtTtl?: number | undefined;
  x509Ttl?: number | undefined;
  taskDeadline?: number | undefined;
}

export interface RegistrationEntry extends RegistrationEntryInput {
  id: string;
  createdAt: number;
  updatedAt: number;
}

export interface JoinTokenRecord {
  spiffeId: string;
  /** A task the token binds its credentials to. */
  task?: string | undefined;
  createdAt: number;
  expiresAt: number;
}

export type CredentialType = 'jwt' | 'x509';

export interface CredentialRecord {
  /** `jti` of a JWT-SVID or the lowercase hex serial of an X.509-SVID. */
  id: string;
  type: CredentialType;
  spiffeId: string;
  task: string;
  attestor: string;
  audience: string[];
  issuedAt: number;
  expiresAt: number;
  /** Signing key id. */
  kid: string;
  legacy?: boolean | undefined;
  revokedAt?: number | undefined;
  revokedReason?: string | undefined;
}

/** Where a task id came from: the attestor (a CI run, a pod), the caller, or the broker. */
export type TaskOrigin = 'attestor' | 'caller' | 'generated';
export type TaskStatus = 'active' | 'completed' | 'expired' | 'revoked';

export interface TaskRecord {
  id: string;
  /** The SPIFFE ID that opened the task. */
  owner: string;
  origin: TaskOrigin;
  createdAt: number;
  deadline: number;
  status: TaskStatus;
  endedAt?: number | undefined;
  endReason?: string | undefined;
}

export interface TaskInit {
  id: string;
  owner: string;
  origin: TaskOrigin;
  /** The deadline used when this issuance creates the task. */
  deadline: number;
}

export type RecordIssuanceResult =
  | { ok: true; task: TaskRecord; created: boolean }
  /** The task has ended: nothing was written. */
  | { ok: false; reason: 'task_ended'; task: TaskRecord }
  /** The task exists and this identity may not join it: nothing was written. */
  | { ok: false; reason: 'task_mismatch'; task: TaskRecord }
  /** The credential would outlive the existing task's deadline: nothing was written; cap and retry. */
  | { ok: false; reason: 'deadline'; task: TaskRecord };

export interface CredentialView {
  credential: CredentialRecord;
  task: TaskRecord | null;
}

/** How a task ended. `expired`: its deadline passed. */
export type TaskEndStatus = Exclude<TaskStatus, 'active'>;

export interface TaskEnd {
  status: TaskEndStatus;
  /** A reason code, `^[a-z][a-z0-9_]{0,63}$` (public: it appears on the revocation feed). */
  reason: string;
  at: number;
}

/** One entry of the public revocation feed. Carries no SPIFFE ID. */
export interface RevocationEvent {
  /** Feed position: a Redis stream id `<ms>-<seq>` (the memory store uses the same format). */
  id: string;
  kind: 'credential' | 'task';
  /** jti or hex serial; only on credential events. */
  credential?: string | undefined;
  credentialType?: CredentialType | undefined;
  task: string;
  /** When the revoked credential (or the last credential of the task) would have expired anyway. */
  expiresAt: number;
  reason: string;
  revokedAt: number;
}

export type CredentialStatus = 'active' | 'expired' | 'revoked';

export interface CredentialFilter {
  task?: string | undefined;
  spiffeId?: string | undefined;
  /** Path-segment aware: `spiffe://td/a` matches `spiffe://td/a` and `spiffe://td/a/b`, not `spiffe://td/ab`. */
  spiffeIdPrefix?: string | undefined;
  attestor?: string | undefined;
  /** The derived status (a credential of an ended task reads `revoked`). */
  status?: CredentialStatus | undefined;
}

export interface TaskFilter {
  status?: TaskStatus | undefined;
  owner?: string | undefined;
}

export interface PageRequest {
  /** Opaque, from a previous page's `next`. */
  cursor?: string | undefined;
  limit: number;
}

export interface Page<T> {
  items: T[];
  /** Present when there may be more. */
  next?: string | undefined;
}

export interface CredentialStore {
  readonly kind: 'memory' | 'redis';

  // registration entries
  createEntry(input: RegistrationEntryInput): Promise<RegistrationEntry>;
  getEntry(id: string): Promise<RegistrationEntry | null>;
  listEntries(): Promise<RegistrationEntry[]>;
  /** Replaces an entry's fields; null when it does not exist. */
  updateEntry(id: string, input: RegistrationEntryInput): Promise<RegistrationEntry | null>;
  deleteEntry(id: string): Promise<boolean>;

  // join tokens (keyed by a hash of the token; the token itself is never stored)
  putJoinToken(hash: string, record: JoinTokenRecord): Promise<void>;
  /** Atomically reads and deletes: a join token is consumed at most once. Expired tokens read as null. */
  consumeJoinToken(hash: string): Promise<JoinTokenRecord | null>;

  // credentials and tasks
  /**
   * Atomically: open the task if it does not exist (with `task.deadline`), refuse when it has ended,
   * when `credential.expiresAt` exceeds its deadline or when the task belongs to another workload,
   * else record the credential in it.
   */
  recordIssuance(credential: CredentialRecord, task: TaskInit): Promise<RecordIssuanceResult>;
  /** A credential with its task; `task` narrows the lookup to one task (one round trip). */
  getCredential(id: string, task?: string): Promise<CredentialView | null>;
  getTask(id: string): Promise<TaskRecord | null>;

  // lifecycle: ending tasks, revoking credentials, the revocation feed
  /**
   * Atomically ends an active task (at most once) and appends its task event to the feed. `ended` is true
   * only for the call that ended it; null when the task does not exist. The task is queued for fan-out.
   */
  endTask(id: string, end: TaskEnd): Promise<{ ended: boolean; task: TaskRecord } | null>;
  /**
   * Fan-out of an ended task, one batch per call: marks up to `batchSize` of its credentials revoked with
   * the task's reason and appends one credential event for each it revoked (expired ones are skipped).
   * Resumes where the previous call stopped (crash safe, idempotent). `done` when every credential was
   * visited; the task then leaves the fan-out queue.
   */
  fanOutTask(id: string, batchSize: number): Promise<{ revoked: number; done: boolean }>;
  /**
   * Revokes one live credential and appends its event atomically. `revoked` is false when it already was
   * revoked, has expired, or its task is no longer active (nothing is written). Null when unknown.
   */
  revokeCredential(
    id: string,
    reason: string,
    at: number,
    task?: string,
  ): Promise<{ revoked: boolean; view: CredentialView } | null>;
  /**
   * Newest first (issuedAt, then id, descending). A filtered page examines a bounded number of records, so it
   * may be short, even empty, and still have a `next`. Bad cursor or limit (1..1000): WritError invalid_request.
   */
  listCredentials(filter: CredentialFilter, page: PageRequest): Promise<Page<CredentialView>>;
  /** Newest first (createdAt, then id, descending); paged as listCredentials. */
  listTasks(filter: TaskFilter, page: PageRequest): Promise<Page<TaskRecord>>;
  /** Number of credentials recorded in a task (including revoked and expired ones still retained). */
  countTaskCredentials(id: string): Promise<number>;
  /** Feed events after `since` (exclusive; undefined = from the oldest retained), oldest first. */
  readRevocations(since: string | undefined, limit: number): Promise<RevocationEvent[]>;
  /**
   * Waits up to `blockMs` for events after `since` (a blocking read on a connection of its own) and
   * returns them; [] on timeout, and [] at once when `signal` aborts. `since` '$' means "from now".
   */
  waitForRevocations(since: string, blockMs: number, signal?: AbortSignal): Promise<RevocationEvent[]>;
  /** The id of the newest feed event, or '0-0'. */
  lastRevocationId(): Promise<string>;
  /** Drops feed events older than `before` (epoch seconds); they concern only expired credentials. */
  trimRevocations(before: number): Promise<void>;
  /** For the sweeper: ended tasks whose fan-out is unfinished, and active tasks whose deadline has passed. */
  pendingTasks(now: number, limit: number): Promise<{ ending: string[]; overdue: string[] }>;

  // small ephemeral state for attestors and rate limits (scope: `^[a-z0-9_]{1,32}$`; keys are opaque, <= 256
  // characters, usually hashes; times are epoch seconds judged by the injected clock)
  /** Records `key` until `expiresAt`; true only for the first call (a replay guard). */
  markOnce(scope: string, key: string, expiresAt: number): Promise<boolean>;
  /**
   * For each of `keys`, whether a mark of `scope` (made by markOnce) is live now; reads only, one round trip.
   * The rate limits check their blocks with it before any work.
   */
  heldMarks(scope: string, keys: readonly string[]): Promise<boolean[]>;
  /** Stores a value until `expiresAt` (a challenge nonce). */
  putEphemeral(scope: string, key: string, value: string, expiresAt: number): Promise<void>;
  /** Reads and deletes atomically: a value is taken at most once; expired values read as null. */
  takeEphemeral(scope: string, key: string): Promise<string | null>;
  /** Reads without taking; expired values read as null. */
  getEphemeral(scope: string, key: string): Promise<string | null>;
  /** Replaces a live value only if it still equals `expected` (atomic compare-and-set); true when replaced. */
  swapEphemeral(
    scope: string,
    key: string,
    expected: string,
    value: string,
    expiresAt: number,
  ): Promise<boolean>;
  /** Counts a hit in a fixed window of `windowSeconds`; returns the count within the current window. */
  countHit(scope: string, key: string, windowSeconds: number): Promise<number>;

  // shared key material (so that every replica signs with the same keys)
  /** Stores `value` under `name` unless a value exists; returns the value that is stored. */
  putKeyMaterialIfAbsent(name: string, value: string): Promise<string>;
  getKeyMaterial(name: string): Promise<string | null>;
  /**
   * Replaces the value under `name` only if it is still `expected` (null: absent); true when written. Key
   * rings rotate through it: of two replicas rotating at once, one wins and the other re-reads.
   */
  swapKeyMaterial(
    name: string,
    expected: string | null,
    value: string,
    /** Deleted in the same atomic step when the value is written (a key the written one replaces for good). */
    opts?: { alsoDelete?: string | undefined },
  ): Promise<boolean>;

  /**
   * The next value of the named counter (`^[a-z0-9_-]{1,64}$`), shared by every replica: 1 on the first call,
   * then strictly increasing, never reused (the CRL number). Kept like key material, without expiry. With a
   * `floor`, the value is at least the floor (epoch milliseconds keep a counter increasing past a data loss).
   */
  nextSequence(name: string, floor?: number): Promise<number>;

  /** Throws when the backing store is unreachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A clock in epoch milliseconds, injected so that time is testable. */
export type Clock = () => number;
export const systemClock: Clock = () => Date.now();
export const seconds = (clock: Clock): number => Math.floor(clock() / 1000);
