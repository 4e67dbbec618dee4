// Redis adapter of the CredentialStore: every key of a task in one hash slot, Lua for each multi-key change.
//
// Data model (all times epoch seconds; `<p>` is the prefix, `writ:` by default):
//   <p>{t:<task>}:task        hash    o owner, g origin, c createdAt, d deadline, s status, e endedAt, r endReason
//   <p>{t:<task>}:creds       zset    credential id -> expiresAt
//   <p>{t:<task>}:cred:<id>   hash    y type, s spiffeId, a attestor, u audience (JSON array), i issuedAt,
//                                     e expiresAt, k kid, l legacy (1|0), v revokedAt, w revokedReason
//   <p>cidx:<id>              string  task id, so that a credential can be found without its task
//   <p>entries                hash    entry id -> entry JSON
//   <p>jt:<hash>              string  join token JSON; expires with the token
//   <p>keys:<name>            string  shared key material; never expires
// A credential key expires at expiresAt + retention, the task keys at max(deadline, latest credential expiry)
// + retention (only ever extended). Decisions use the injected clock, passed to Lua in ARGV; key TTLs use the
// server's time, so they are never in the past. Records past expiry + retention by the injected clock also
// read as absent, so both adapters drop records at the same moment.
//
// Connection: the Redis client belongs to the caller; this store never quits or disconnects it (close() only
// stops the store). Lua scripts are registered on that client with defineCommand under `writ*` names.
// Failures: every call is wrapped; a Redis that is unreachable, refuses (LOADING, READONLY, OOM...) or does not
// answer within `commandTimeoutMs` gives WritError ERR_STORE_UNAVAILABLE with the client error only as the
// cause. The timeout makes the store fail fast whatever the client's options, but a command that timed out may
// still run later: callers treat ERR_STORE_UNAVAILABLE as "nothing was returned", never as "nothing happened".
// Recommended client options: `redisClientOptions` below.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis, RedisOptions } from 'ioredis';
import { z } from 'zod';
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
  type TaskStatus,
} from '../types.ts';

/**
 * Client options for a broker connection: a command sent while Redis is down fails at once instead of
 * queueing (so issuance answers 503 quickly), and the client keeps reconnecting in the background.
 * With `enableOfflineQueue: false` the caller must wait for the connection to be ready before serving
 * (`lazyConnect: true` + `await redis.connect()`).
 */
export const redisClientOptions = {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  connectTimeout: 5000,
} as const satisfies RedisOptions;

export interface RedisStoreOptions {
  /** Owned by the caller: never closed by the store. */
  redis: Redis;
  /** Key prefix; default `writ:`. */
  prefix?: string;
  clock?: Clock;
  /** Seconds a credential or task record is kept after it expires; default 3600. */
  retentionSeconds?: number;
  /** A call that gets no answer within this many ms fails with ERR_STORE_UNAVAILABLE; default 2000. */
  commandTimeoutMs?: number;
}

/** Key names, shared with other modules that touch the same data (lifecycle scripts, sweepers). */
export function redisKeys(prefix: string) {
  return {
    task: (task: string) => `${prefix}{t:${task}}:task`,
    taskCredentials: (task: string) => `${prefix}{t:${task}}:creds`,
    credential: (task: string, id: string) => `${prefix}{t:${task}}:cred:${id}`,
    credentialIndex: (id: string) => `${prefix}cidx:${id}`,
    entries: `${prefix}entries`,
    joinToken: (hash: string) => `${prefix}jt:${hash}`,
    keyMaterial: (name: string) => `${prefix}keys:${name}`,
  };
}

/** Field names of the task hash. */
export const TASK_FIELDS = {
  owner: 'o',
  origin: 'g',
  createdAt: 'c',
  deadline: 'd',
  status: 's',
  endedAt: 'e',
  endReason: 'r',
} as const;

/** Field names of the credential hash. */
export const CREDENTIAL_FIELDS = {
  type: 'y',
  spiffeId: 's',
  attestor: 'a',
  audience: 'u',
  issuedAt: 'i',
  expiresAt: 'e',
  kid: 'k',
  legacy: 'l',
  revokedAt: 'v',
  revokedReason: 'w',
} as const;

// ---- Lua scripts: files in ./lua named <name>-<numKeys>.lua, registered under these command names.

const SCRIPTS = {
  writRecordIssuance: 'record-issuance-3.lua',
  writPutEntry: 'put-entry-1.lua',
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptCommands = Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

function defineScripts(redis: Redis): ScriptCommands {
  for (const [command, file] of Object.entries(SCRIPTS)) {
    const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
    const lua = readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
    redis.defineCommand(command, { lua, numberOfKeys });
  }
  return redis as unknown as ScriptCommands;
}

// ---- Script return codes, mapped in one place.

const RECORD_ISSUANCE_CODES = {
  1: 'ok',
  [-1]: 'task_ended',
  [-2]: 'task_mismatch',
  [-3]: 'deadline',
} as const satisfies Record<number, 'ok' | Extract<RecordIssuanceResult, { ok: false }>['reason']>;

const PUT_ENTRY_CODES = {
  1: 'written',
  0: 'missing',
  [-1]: 'conflict',
  [-2]: 'taken',
} as const;

function mapCode<T extends Record<number, string>>(codes: T, code: number): T[keyof T] {
  const mapped = (codes as Record<number, T[keyof T]>)[code];
  if (mapped === undefined) throw malformed('script reply', new Error(`unknown code ${code}`));
  return mapped;
}

// ---- Schemas for everything read back from Redis (stored data is never trusted blindly).

const epoch = z
  .string()
  .regex(/^-?\d+$/)
  .transform(Number);

const jsonText = z.string().transform((text, ctx): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    ctx.issues.push({ code: 'custom', message: 'invalid JSON', input: text });
    return z.NEVER;
  }
});

const taskHash = z.object({
  o: z.string(),
  g: z.enum(['attestor', 'caller', 'generated']),
  c: epoch,
  d: epoch,
  s: z.enum(['active', 'completed', 'expired', 'revoked']),
  e: epoch.optional(),
  r: z.string().optional(),
});

const credentialHash = z.object({
  y: z.enum(['jwt', 'x509']),
  s: z.string(),
  a: z.string(),
  u: jsonText.pipe(z.array(z.string())),
  i: epoch,
  e: epoch,
  k: z.string(),
  l: z.enum(['0', '1']).optional(),
  v: epoch.optional(),
  w: z.string().optional(),
});

const storedEntry = jsonText.pipe(
  z.strictObject({
    id: z.string(),
    spiffeId: z.string(),
    selectors: z.array(z.string()),
    audiences: z.array(z.string()).optional(),
    jwtTtl: z.number().optional(),
    x509Ttl: z.number().optional(),
    taskDeadline: z.number().optional(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  }),
);

const storedJoinToken = jsonText.pipe(
  z.strictObject({
    spiffeId: z.string(),
    task: z.string().optional(),
    createdAt: z.number().int(),
    expiresAt: z.number().int(),
  }),
);

const recordIssuanceReply = z.tuple([z.number().int(), z.number().int(), z.array(z.string())]);
const hashReply = z.record(z.string(), z.string());

function malformed(what: string, cause: unknown): WritError {
  return new WritError('server_error', undefined, {
    cause: new Error(`stored ${what} is malformed`, { cause }),
  });
}

function parseStored<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw malformed(what, parsed.error);
  return parsed.data;
}

// Reply errors that mean "Redis cannot serve right now" rather than "this command is wrong".
const UNAVAILABLE_REPLIES =
  /^(LOADING|READONLY|OOM|BUSY|MASTERDOWN|MISCONF|NOREPLICAS|CLUSTERDOWN|TRYAGAIN)\b/;

function storeError(cause: unknown): WritError {
  if (cause instanceof WritError) return cause;
  if (cause instanceof Error && cause.name === 'ReplyError' && !UNAVAILABLE_REPLIES.test(cause.message)) {
    return new WritError('server_error', undefined, { cause });
  }
  return new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause });
}

export class RedisStore implements CredentialStore {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #scripts: ScriptCommands;
  readonly #keys: ReturnType<typeof redisKeys>;
  readonly #clock: Clock;
  readonly #retention: number;
  readonly #timeoutMs: number;
  #closed = false;

  constructor(opts: RedisStoreOptions) {
    const retention = opts.retentionSeconds ?? 3600;
    if (!Number.isSafeInteger(retention) || retention < 0) {
      throw new TypeError('retentionSeconds must be a non-negative integer');
    }
    this.#redis = opts.redis;
    this.#scripts = defineScripts(opts.redis);
    this.#keys = redisKeys(opts.prefix ?? 'writ:');
    this.#clock = opts.clock ?? systemClock;
    this.#retention = retention;
    this.#timeoutMs = opts.commandTimeoutMs ?? 2000;
  }

  // ---- registration entries

  async createEntry(input: RegistrationEntryInput): Promise<RegistrationEntry> {
    const now = seconds(this.#clock);
    // A random UUID is unused in practice; the script still refuses to overwrite one that is taken.
    for (let attempt = 0; attempt < 3; attempt++) {
      const entry = buildEntry(randomUUID(), input, now, now);
      const outcome = await this.#putEntry(entry, 'create');
      if (outcome === 'written') return entry;
      if (outcome === 'conflict') throw new WritError('ERR_ENTRY_CONFLICT');
    }
    throw new WritError('server_error', undefined, { cause: new Error('no unused entry id found') });
  }

  async getEntry(id: string): Promise<RegistrationEntry | null> {
    const json = await this.#call(() => this.#redis.hget(this.#keys.entries, id));
    return json === null ? null : parseStored(storedEntry, json, 'entry');
  }

  async listEntries(): Promise<RegistrationEntry[]> {
    const values = await this.#call(() => this.#redis.hvals(this.#keys.entries));
    return values.map((json) => parseStored(storedEntry, json, 'entry')).sort(byCreation);
  }

  async updateEntry(id: string, input: RegistrationEntryInput): Promise<RegistrationEntry | null> {
    // The read only supplies createdAt, which never changes; existence and conflicts are checked in the script.
    const current = await this.#call(() => this.#redis.hget(this.#keys.entries, id));
    if (current === null) return null;
    const existing = parseStored(storedEntry, current, 'entry');
    const entry = buildEntry(id, input, existing.createdAt, seconds(this.#clock));
    const outcome = await this.#putEntry(entry, 'replace');
    if (outcome === 'conflict') throw new WritError('ERR_ENTRY_CONFLICT');
    return outcome === 'written' ? entry : null;
  }

  async deleteEntry(id: string): Promise<boolean> {
    const removed = await this.#call(() => this.#redis.hdel(this.#keys.entries, id));
    return removed > 0;
  }

  async #putEntry(entry: RegistrationEntry, mode: 'create' | 'replace') {
    const reply = await this.#call(() =>
      this.#scripts.writPutEntry(
        this.#keys.entries,
        entry.id,
        mode,
        JSON.stringify(entry),
        entry.spiffeId,
        ...entry.selectors,
      ),
    );
    return mapCode(PUT_ENTRY_CODES, parseStored(z.number().int(), reply, 'script reply'));
  }

  // ---- join tokens

  async putJoinToken(hash: string, record: JoinTokenRecord): Promise<void> {
    const json = JSON.stringify({
      spiffeId: record.spiffeId,
      task: record.task,
      createdAt: record.createdAt,
      expiresAt: record.expiresAt,
    });
    // Expiry is judged by the injected clock on consumption; the key's own expiry only has to be in the future.
    const expireAt = Math.max(record.expiresAt, realSeconds() + 1);
    await this.#call(() => this.#redis.set(this.#keys.joinToken(hash), json, 'EXAT', expireAt));
  }

  async consumeJoinToken(hash: string): Promise<JoinTokenRecord | null> {
    const json = await this.#call(() => this.#redis.getdel(this.#keys.joinToken(hash)));
    if (json === null) return null;
    const record = parseStored(storedJoinToken, json, 'join token');
    return seconds(this.#clock) >= record.expiresAt ? null : record;
  }

  // ---- credentials and tasks

  async recordIssuance(credential: CredentialRecord, task: TaskInit): Promise<RecordIssuanceResult> {
    assertIssuance(credential, task);
    const now = seconds(this.#clock);
    const indexExpiry = Math.max(credential.expiresAt, realSeconds()) + this.#retention;
    // Both commands go out together (one round trip). The index lives in another slot, so it cannot be in the
    // script; when the script refuses, the index points at a task without this credential and reads as absent.
    const [reply] = await this.#call(() =>
      Promise.all([
        this.#scripts.writRecordIssuance(
          this.#keys.task(task.id),
          this.#keys.taskCredentials(task.id),
          this.#keys.credential(task.id, credential.id),
          now,
          this.#retention,
          task.owner,
          task.origin,
          task.deadline,
          credential.id,
          credential.expiresAt,
          ...credentialFields(credential),
        ),
        this.#redis.set(this.#keys.credentialIndex(credential.id), task.id, 'EXAT', indexExpiry),
      ]),
    );
    const [code, created, fields] = parseStored(recordIssuanceReply, reply, 'script reply');
    const record = toTask(task.id, parseStored(taskHash, pairs(fields), 'task'), now);
    const outcome = mapCode(RECORD_ISSUANCE_CODES, code);
    return outcome === 'ok'
      ? { ok: true, task: record, created: created === 1 }
      : { ok: false, reason: outcome, task: record };
  }

  async getCredential(id: string, task?: string): Promise<CredentialView | null> {
    const taskId = task ?? (await this.#call(() => this.#redis.get(this.#keys.credentialIndex(id))));
    if (taskId === null) return null;
    const [credentialFields, taskFields] = await this.#call(async () => {
      const replies = await this.#redis
        .multi()
        .hgetall(this.#keys.credential(taskId, id))
        .hgetall(this.#keys.task(taskId))
        .exec();
      if (replies === null) throw new Error('transaction aborted');
      return replies.map(([error, value]) => {
        if (error) throw error;
        return parseStored(hashReply, value, 'hash');
      });
    });
    if (credentialFields === undefined || Object.keys(credentialFields).length === 0) return null;
    const now = seconds(this.#clock);
    const credential = toCredential(id, taskId, parseStored(credentialHash, credentialFields, 'credential'));
    if (now >= credential.expiresAt + this.#retention) return null;
    return { credential, task: this.#liveTask(taskId, taskFields, now) };
  }

  async getTask(id: string): Promise<TaskRecord | null> {
    const fields = await this.#call(() => this.#redis.hgetall(this.#keys.task(id)));
    return this.#liveTask(id, fields, seconds(this.#clock));
  }

  #liveTask(id: string, fields: Record<string, string> | undefined, now: number): TaskRecord | null {
    if (fields === undefined || Object.keys(fields).length === 0) return null;
    const task = toTask(id, parseStored(taskHash, fields, 'task'), now);
    // Credentials never outlive the deadline, so the task's records are dropped at deadline + retention.
    return now >= task.deadline + this.#retention ? null : task;
  }

  // ---- shared key material

  async putKeyMaterialIfAbsent(name: string, value: string): Promise<string> {
    // SET NX GET (Redis >= 7): one atomic step that returns what was there before, nil when we wrote.
    const previous = await this.#call(() =>
      this.#redis.call('SET', this.#keys.keyMaterial(name), value, 'NX', 'GET'),
    );
    return previous === null ? value : parseStored(z.string(), previous, 'key material');
  }

  async getKeyMaterial(name: string): Promise<string | null> {
    return this.#call(() => this.#redis.get(this.#keys.keyMaterial(name)));
  }

  async ping(): Promise<void> {
    const reply = await this.#call(() => this.#redis.ping());
    if (reply !== 'PONG')
      throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('bad PING reply') });
  }

  /** Stops this store: later calls fail with ERR_STORE_UNAVAILABLE. The caller's connection stays open. */
  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Runs one Redis exchange: bounded in time, with every failure mapped to a WritError. */
  async #call<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('the store is closed') });
    }
    const pending = new Promise<T>((resolve) => resolve(op()));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer from redis within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    try {
      return await Promise.race([pending, timeout]);
    } catch (cause) {
      pending.catch(() => {}); // settles later, if ever; already reported
      throw storeError(cause);
    } finally {
      clearTimeout(timer);
    }
  }
}

// ---- encoding helpers

function realSeconds(): number {
  return Math.floor(Date.now() / 1000);
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

function credentialFields(c: CredentialRecord): string[] {
  const f = CREDENTIAL_FIELDS;
  const fields = [
    f.type,
    c.type,
    f.spiffeId,
    c.spiffeId,
    f.attestor,
    c.attestor,
    f.audience,
    JSON.stringify(c.audience),
    f.issuedAt,
    String(c.issuedAt),
    f.expiresAt,
    String(c.expiresAt),
    f.kid,
    c.kid,
  ];
  if (c.legacy !== undefined) fields.push(f.legacy, c.legacy ? '1' : '0');
  if (c.revokedAt !== undefined) fields.push(f.revokedAt, String(c.revokedAt));
  if (c.revokedReason !== undefined) fields.push(f.revokedReason, c.revokedReason);
  return fields;
}

function toCredential(id: string, task: string, h: z.output<typeof credentialHash>): CredentialRecord {
  const credential: CredentialRecord = {
    id,
    type: h.y,
    spiffeId: h.s,
    task,
    attestor: h.a,
    audience: h.u,
    issuedAt: h.i,
    expiresAt: h.e,
    kid: h.k,
  };
  if (h.l !== undefined) credential.legacy = h.l === '1';
  if (h.v !== undefined) credential.revokedAt = h.v;
  if (h.w !== undefined) credential.revokedReason = h.w;
  return credential;
}

function toTask(id: string, h: z.output<typeof taskHash>, now: number): TaskRecord {
  const task: TaskRecord = {
    id,
    owner: h.o,
    origin: h.g,
    createdAt: h.c,
    deadline: h.d,
    status: derivedStatus(h.s, h.d, now),
  };
  if (h.e !== undefined) task.endedAt = h.e;
  if (h.r !== undefined) task.endReason = h.r;
  return task;
}

/** `expired` is derived: an active task whose deadline has passed has ended, whether or not a job has run. */
function derivedStatus(status: TaskStatus, deadline: number, now: number): TaskStatus {
  return status === 'active' && now >= deadline ? 'expired' : status;
}

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}
