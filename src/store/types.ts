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

  // shared key material (so that every replica signs with the same keys)
  /** Stores `value` under `name` unless a value exists; returns the value that is stored. */
  putKeyMaterialIfAbsent(name: string, value: string): Promise<string>;
  getKeyMaterial(name: string): Promise<string | null>;

  /** Throws when the backing store is unreachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A clock in epoch milliseconds, injected so that time is testable. */
export type Clock = () => number;
export const systemClock: Clock = () => Date.now();
export const seconds = (clock: Clock): number => Math.floor(clock() / 1000);
