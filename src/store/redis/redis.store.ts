// Redis adapter of the CredentialStore: every key of a task in one hash slot, Lua for each multi-key change.
//
// Data model (all times epoch seconds; `<p>` is the prefix, `writ:` by default):
//   <p>{t:<task>}:task        hash    o owner, g origin, c createdAt, d deadline, s status, e endedAt, r endReason,
//                                     p fan-out cursor (index into the task's credentials: k first, then :creds),
//                                     f fan-out done (1); the task's only credential: k id, x expiresAt and its
//                                     record under the names of INLINE_FIELDS (y, n, a, u, i, j, l, v, w)
//   <p>{t:<task>}:creds       zset    credential id -> expiresAt; made when a second credential joins the task (the
//                                     first moves here from k, x, its record to its own hash): a one-credential
//                                     task has no key for either
//   <p>{t:<task>}:cred:<id>   hash    y type, s spiffeId (only when it is not the task owner's: the task hash
//                                     outlives the credential's), a attestor, u audience (JSON array), i issuedAt,
//                                     e expiresAt, k kid, l legacy (1|0), v revokedAt, w revokedReason. Brokers
//                                     before the inline record wrote it for a task's only credential too (the task
//                                     hash then has k and x but no y): read, revoked and fanned out as before
//   <p>ci:<bucket>            hash    credential id -> task id, so that a credential can be found without its task;
//                                     4096 buckets by a hash of the id (small hashes stay listpack-encoded: no key,
//                                     TTL and dict entry per credential). Fields have no TTL: they go when the
//                                     listing index drops the credential (trimRevocations, listings).
//   <p>cidx:<id>              string  the same, as brokers before the buckets wrote it (read as a fallback; these
//                                     keys expire with their credential)
//   <p>ix:creds (+ buckets)   zsets   admin listing of credentials: member `<issuedAt>:<id>` (issuedAt zero-padded
//                                     to 10 digits; the task comes from the id index), in a directory of small
//                                     buckets `ix:creds:<name>` (lua/bucket-index.lua: listpack-encoded, ~55 B a
//                                     member where one big zset costs ~150): read newest first, resuming after a
//                                     cursor member whatever was inserted meanwhile (lua/index-range-1.lua).
//   <p>ix:tasks (+ buckets)   zsets   admin listing of tasks, the same way: member `<createdAt>|<task>`
//   <p>tasks:due              zset    task listing bucket -> a lower bound of the earliest deadline of its active
//                                     tasks: the deadlines job reads the due buckets' tasks (lua/due-tasks-2.lua)
//   <p>idx:creds, idx:tasks   zset    the listings as brokers before the buckets wrote them (one zset each, scores
//                                     0; `idx:creds` members `<issuedAt>:<id>` or, earlier, `<issuedAt>|<id>|<task>`)
//   <p>tasks:deadlines        zset    active task id -> deadline, as those brokers wrote it
//                                     These three are read (merged with the buckets) and trimmed until empty.
//   <p>tasks:ending           zset    ended task id -> endedAt, until its fan-out is done
//   <p>revocations            stream  the public revocation feed, XADD `*` ids; fields k kind (t|c), t task,
//                                     c credential id, y type, x expiresAt, r reason, v revokedAt (no SPIFFE ID)
//   <p>entries                hash    entry id -> entry JSON
//   <p>entries:version        string  random, set anew by every entry write (put-entry, delete-entry): replicas
//                                     keep the entries in process and re-read them only when it has changed
//   <p>jt:<hash>              string  join token JSON; expires with the token
//   <p>keys:<name>            string  shared key material; never expires
// A credential key (and its cidx) expires at expiresAt + retention, the task keys at max(deadline, latest
// credential expiry) + retention (only ever extended). A record kept in the task hash is read as gone from its
// expiresAt + retention and its fields are dropped then by the sweeper's trim (with its listing entry), or by the
// next issuance into the task. Decisions use the injected clock, passed to Lua in ARGV;
// key TTLs use the server's time, so they are never in the past. Records past expiry + retention by the injected
// clock also read as absent, so both adapters drop records at the same moment.
// The global indexes hold no TTL; their entries are trimmed once Redis has dropped the record they point to:
// ix:* and idx:* lazily by the listings (an entry whose record is gone is removed when a page meets it) and, oldest
// first and bounded, by trimRevocations (the sweeper's periodic call); an emptied bucket leaves its directory;
// tasks:due by pendingTasks (a due bucket's score is made exact whenever it is read); tasks:ending and
// tasks:deadlines by endTask and fanOutTask (a missing task leaves both) and by pendingTasks (entries of tasks
// that are gone are removed, not returned).
//
// Atomicity and deployment: the target is a standalone Redis (an ioredis `Redis` client). The lifecycle scripts
// (record-issuance, end-task, fan-out, revoke-credential) change a task's keys together with global keys (the
// stream, the indexes) in one script, declared in KEYS (an index's buckets are reached by name from its directory,
// as the fan-out reaches credential hashes from the task's): atomic on a standalone Redis, so a revocation is never
// recorded without its feed event, nor an event emitted for a credential that is not revoked. Redis Cluster would
// need these split (the global writes made at-least-once through an outbox); that is not supported yet. Every
// task's keys stay in its `{t:<task>}` hash slot all the same.
//
// Connection: the Redis client belongs to the caller; this store never quits or disconnects it (close() only
// stops the store). Lua scripts are registered on that client with defineCommand under `writ*` names. The
// blocking feed reads (waitForRevocations) use a second connection of the store's own, made lazily with
// `redis.duplicate()` and closed by close().
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
  assertBatchSize,
  assertBlockMs,
  assertEpoch,
  assertIssuance,
  assertLimit,
  assertReason,
  assertSequenceFloor,
  assertSequenceName,
  assertTaskEnd,
  compareKeys,
  credentialFilterNarrows,
  credentialKey,
  decodeCursor,
  formatFeedPosition,
  type Loaded,
  MAX_FEED_READ,
  MAX_STREAM_ID,
  matchesCredential,
  matchesTask,
  parseCredentialKey,
  parseFeedPosition,
  parseTaskKey,
  type ScanSource,
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
  type TaskStatus,
} from '../types.ts';
import { callRedis, malformed } from './redis-call.ts';

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
    credentialIndex: (id: string) => `${prefix}ci:${credentialIndexBucket(id)}`,
    /** The per-credential key of brokers before the buckets; read as a fallback until it expires. */
    legacyCredentialIndex: (id: string) => `${prefix}cidx:${id}`,
    /** Listing indexes, each a directory of small buckets (lua/bucket-index.lua): `<directory>:<bucket name>`. */
    credentialListing: `${prefix}ix:creds`,
    taskListing: `${prefix}ix:tasks`,
    /** The task listing's buckets scored by the earliest deadline of their active tasks (a lower bound). */
    tasksDue: `${prefix}tasks:due`,
    /** The single-zset indexes of brokers before the buckets; read (and trimmed) until they are empty. */
    legacyCredentialListing: `${prefix}idx:creds`,
    legacyTaskListing: `${prefix}idx:tasks`,
    legacyTaskDeadlines: `${prefix}tasks:deadlines`,
    tasksEnding: `${prefix}tasks:ending`,
    revocations: `${prefix}revocations`,
    entries: `${prefix}entries`,
    entriesVersion: `${prefix}entries:version`,
    joinToken: (hash: string) => `${prefix}jt:${hash}`,
    keyMaterial: (name: string) => `${prefix}keys:${name}`,
    sequence: (name: string) => `${prefix}seq:${name}`,
    ephemeral: (kind: 'once' | 'eph' | 'hit', scope: string, key: string) =>
      `${prefix}${kind}:${scope}:${key}`,
  };
}

/** The credential id index bucket of an id: 3 hex digits of its FNV-1a hash (ids are broker-made, random). */
export function credentialIndexBucket(id: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return ((h >>> 0) & 0xfff).toString(16).padStart(3, '0');
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
  fanOutCursor: 'p',
  fanOutDone: 'f',
} as const;

/** Field names of a revocation stream entry; `kind` is `t` (task) or `c` (credential). */
export const EVENT_FIELDS = {
  kind: 'k',
  task: 't',
  credential: 'c',
  credentialType: 'y',
  expiresAt: 'x',
  reason: 'r',
  revokedAt: 'v',
} as const;

/**
 * Where a task's only credential keeps its record in the task hash: credential hash field -> task hash field (no
 * task field has these names). Also in record-issuance-7.lua.
 */
export const INLINE_FIELDS = {
  y: 'y',
  s: 'n',
  a: 'a',
  u: 'u',
  i: 'i',
  e: 'x',
  k: 'j',
  l: 'l',
  v: 'v',
  w: 'w',
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

/** Cached registration entries are re-read at least this often, whatever the version key says. */
const ENTRY_CACHE_MAX_AGE_MS = 1_000;

// ---- Lua scripts: files in ./lua named <name>-<numKeys>.lua, registered under these command names.

const SCRIPTS = {
  writRecordIssuance: 'record-issuance-7.lua',
  writIndexRange: 'index-range-1.lua',
  writIndexRemove: 'index-remove-2.lua',
  writDueTasks: 'due-tasks-2.lua',
  writPutEntry: 'put-entry-2.lua',
  writDeleteEntry: 'delete-entry-2.lua',
  writEndTask: 'end-task-5.lua',
  writFanOutTask: 'fan-out-4.lua',
  writRevokeCredential: 'revoke-credential-3.lua',
  writSwapKeyMaterial: 'swap-key-material-2.lua',
  writNextSequence: 'next-sequence-1.lua',
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptCommands = Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

function defineScripts(redis: Redis): ScriptCommands {
  const read = (file: string) => readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
  for (const [command, file] of Object.entries(SCRIPTS)) {
    const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
    // `-- @include <file>` lines are replaced by that file (shared functions)
    const lua = read(file).replace(/^-- @include ([a-z-]+\.lua)$/gm, (_, name: string) => read(name));
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

const END_TASK_CODES = { 1: 'ended', 0: 'already', [-1]: 'missing' } as const;
const REVOKE_CODES = { 1: 'revoked', 0: 'refused', [-1]: 'missing' } as const;

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
  p: epoch.optional(),
  f: z.literal('1').optional(),
});

const credentialHash = z.object({
  y: z.enum(['jwt', 'x509']),
  s: z.string().optional(),
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

const eventHash = z.discriminatedUnion('k', [
  z.object({ k: z.literal('t'), t: z.string(), x: epoch, r: z.string(), v: epoch }),
  z.object({
    k: z.literal('c'),
    t: z.string(),
    c: z.string(),
    y: z.enum(['jwt', 'x509']),
    x: epoch,
    r: z.string(),
    v: epoch,
  }),
]);
const streamEntries = z.array(z.tuple([z.string().regex(/^\d+-\d+$/), z.array(z.string())]));
const xreadReply = z.union([z.null(), z.array(z.tuple([z.string(), streamEntries]))]);

const recordIssuanceReply = z.tuple([z.number().int(), z.number().int(), z.array(z.string())]);
const endTaskReply = z.tuple([z.number().int(), z.array(z.string())]);
const fanOutReply = z.tuple([z.number().int().nonnegative(), z.union([z.literal(0), z.literal(1)])]);
const revokeReply = z.tuple([z.number().int(), z.array(z.string()), z.array(z.string())]);
const hashReply = z.record(z.string(), z.string());
const stringList = z.array(z.string());
const markValues = z.array(z.string().nullable());

interface StringReads {
  keys: string[];
  callers: {
    at: number;
    count: number;
    resolve: (values: (string | null)[]) => void;
    reject: (e: unknown) => void;
  }[];
}

function parseStored<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw malformed(what, parsed.error);
  return parsed.data;
}

// KEYS[1] mark; ARGV now, expiresAt, real-time key expiry. A mark counts until its own expiresAt by the
// broker's clock (the key's Redis expiry only has to be later).
const MARK_ONCE = `
local held = tonumber(redis.call('GET', KEYS[1]))
if held and held > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
return 1`;

// KEYS[1] task hash, KEYS[2] its credential zset; ARGV credential id, floor (now - retention, injected clock). Drops
// the record of the task's only credential from the task hash once it is past expiresAt + retention. Not while the
// zset exists (only tasks written by brokers before have both): the fan-out's cursor counts the inline one.
const DROP_INLINE = `
local held = redis.call('HMGET', KEYS[1], 'k', 'x', 'y')
if held[1] ~= ARGV[1] or not held[3] or tonumber(held[2]) > tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HDEL', KEYS[1], 'k', 'x', 'y', 'n', 'a', 'u', 'i', 'j', 'l', 'v', 'w')
return 1`;

// KEYS[1] ephemeral value; ARGV expected value, new JSON record, now, real-time key expiry. Replaces the record
// only while it is live and holds the expected value.
const SWAP_EPHEMERAL = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, rec = pcall(cjson.decode, raw)
if not ok or rec.v ~= ARGV[1] or tonumber(rec.e) <= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[4])
return 1`;

export class RedisStore implements CredentialStore {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  /** String reads waiting for this turn's MGET (#readStrings). */
  #reads: StringReads | undefined;
  readonly #scripts: ScriptCommands;
  readonly #prefix: string;
  readonly #keys: ReturnType<typeof redisKeys>;
  readonly #clock: Clock;
  readonly #retention: number;
  readonly #timeoutMs: number;
  /**
   * The entries as last read, with the version they were read at. Every listEntries checks the version (one
   * small read) and re-reads the entries only when another write has happened since, on any replica.
   */
  #entryCache: { version: string; entries: readonly RegistrationEntry[]; readAt: number } | undefined;
  /** The store's own connection for blocking feed reads, made on first use. */
  #blocking: Promise<Redis> | undefined;
  /** Per listing index, the last key the last trim read, when it stopped short of the end. */
  readonly #trimFrom = new Map<string, string>();
  #closed = false;

  constructor(opts: RedisStoreOptions) {
    const retention = opts.retentionSeconds ?? 3600;
    if (!Number.isSafeInteger(retention) || retention < 0) {
      throw new TypeError('retentionSeconds must be a non-negative integer');
    }
    this.#redis = opts.redis;
    this.#scripts = defineScripts(opts.redis);
    this.#prefix = opts.prefix ?? 'writ:';
    this.#keys = redisKeys(this.#prefix);
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
    const k = this.#keys;
    const cached = this.#entryCache;
    // The version is read on every call: an entry deleted or changed on another replica is seen at once.
    const [version = null] = await this.#readStrings([k.entriesVersion]);
    // A write that does not bump the version (an older broker during an upgrade, an operator's HDEL) is seen
    // within ENTRY_CACHE_MAX_AGE_MS all the same.
    if (
      cached !== undefined &&
      version !== null &&
      version === cached.version &&
      performance.now() - cached.readAt < ENTRY_CACHE_MAX_AGE_MS
    ) {
      return [...cached.entries];
    }
    const readAt = performance.now();
    // Version and entries in one transaction, so that the entries cached are exactly those of that version.
    const [readVersion, values] = await this.#call(async () => {
      const replies = await this.#redis.multi().get(k.entriesVersion).hvals(k.entries).exec();
      if (replies === null) throw new Error('transaction aborted');
      const [[versionError, v], [valuesError, vals]] = replies as [
        [Error | null, unknown],
        [Error | null, unknown],
      ];
      if (versionError) throw versionError;
      if (valuesError) throw valuesError;
      return [v, vals] as const;
    });
    const entries = parseStored(stringList, values, 'entries')
      .map((json) => freezeEntry(parseStored(storedEntry, json, 'entry')))
      .sort(byCreation);
    // Without a version (entries written by hand, or by an older broker) nothing is cached: re-read each time.
    this.#entryCache =
      typeof readVersion === 'string' ? { version: readVersion, entries, readAt } : undefined;
    return [...entries];
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
    const k = this.#keys;
    const removed = await this.#call(() =>
      this.#scripts.writDeleteEntry(k.entries, k.entriesVersion, id, randomUUID()),
    );
    return parseStored(z.number().int(), removed, 'script reply') > 0;
  }

  async #putEntry(entry: RegistrationEntry, mode: 'create' | 'replace') {
    const reply = await this.#call(() =>
      this.#scripts.writPutEntry(
        this.#keys.entries,
        this.#keys.entriesVersion,
        entry.id,
        mode,
        JSON.stringify(entry),
        entry.spiffeId,
        randomUUID(),
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
    const k = this.#keys;
    const reply = await this.#call(() =>
      this.#scripts.writRecordIssuance(
        k.task(task.id),
        k.taskCredentials(task.id),
        k.credential(task.id, credential.id),
        k.credentialIndex(credential.id),
        k.credentialListing,
        k.taskListing,
        k.tasksDue,
        now,
        this.#retention,
        task.owner,
        task.origin,
        task.deadline,
        credential.id,
        credential.expiresAt,
        task.id,
        credentialKey(credential),
        taskKey({ createdAt: now, id: task.id }),
        credential.spiffeId,
        ...credentialFields(credential),
      ),
    );
    const [code, created, fields] = parseStored(recordIssuanceReply, reply, 'script reply');
    const record = toTask(task.id, parseStored(taskHash, pairs(fields), 'task'), now);
    const outcome = mapCode(RECORD_ISSUANCE_CODES, code);
    return outcome === 'ok'
      ? { ok: true, task: record, created: created === 1 }
      : { ok: false, reason: outcome, task: record };
  }

  /** The task a credential id was recorded in (the id index; brokers before the buckets: their own key). */
  async #taskOf(id: string): Promise<string | null> {
    const [bucketed, legacy] = await this.#pipeline([
      ['hget', this.#keys.credentialIndex(id), id],
      ['get', this.#keys.legacyCredentialIndex(id)],
    ]);
    return parseStored(z.string().nullable(), bucketed ?? legacy ?? null, 'credential index');
  }

  async getCredential(id: string, task?: string): Promise<CredentialView | null> {
    const taskId = task ?? (await this.#taskOf(id));
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
    const record = recordOf(id, credentialFields, taskFields);
    if (record === undefined) return null;
    const now = seconds(this.#clock);
    const credential = toCredential(
      id,
      taskId,
      parseStored(credentialHash, record, 'credential'),
      taskFields,
    );
    if (credential === null || now >= credential.expiresAt + this.#retention) return null;
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

  // ---- lifecycle: ending tasks, revoking credentials, listings

  async endTask(id: string, end: TaskEnd): Promise<{ ended: boolean; task: TaskRecord } | null> {
    assertTaskEnd(end);
    const now = seconds(this.#clock);
    const k = this.#keys;
    const reply = await this.#call(() =>
      this.#scripts.writEndTask(
        k.task(id),
        k.taskCredentials(id),
        k.revocations,
        k.tasksEnding,
        k.legacyTaskDeadlines,
        now,
        this.#retention,
        id,
        end.status,
        end.reason,
        end.at,
      ),
    );
    const [code, fields] = parseStored(endTaskReply, reply, 'script reply');
    const outcome = mapCode(END_TASK_CODES, code);
    if (outcome === 'missing') return null;
    const task = toTask(id, parseStored(taskHash, pairs(fields), 'task'), now);
    return { ended: outcome === 'ended', task };
  }

  async fanOutTask(id: string, batchSize: number): Promise<{ revoked: number; done: boolean }> {
    assertBatchSize(batchSize);
    const k = this.#keys;
    const reply = await this.#call(() =>
      this.#scripts.writFanOutTask(
        k.task(id),
        k.taskCredentials(id),
        k.revocations,
        k.tasksEnding,
        seconds(this.#clock),
        this.#retention,
        id,
        batchSize,
      ),
    );
    const [revoked, done] = parseStored(fanOutReply, reply, 'script reply');
    return { revoked, done: done === 1 };
  }

  async revokeCredential(
    id: string,
    reason: string,
    at: number,
    task?: string,
  ): Promise<{ revoked: boolean; view: CredentialView } | null> {
    assertReason(reason);
    assertEpoch('at', at);
    const taskId = task ?? (await this.#taskOf(id));
    if (taskId === null) return null;
    const now = seconds(this.#clock);
    const k = this.#keys;
    const reply = await this.#call(() =>
      this.#scripts.writRevokeCredential(
        k.credential(taskId, id),
        k.task(taskId),
        k.revocations,
        now,
        this.#retention,
        taskId,
        id,
        reason,
        at,
      ),
    );
    const [code, credentialFields, taskFields] = parseStored(revokeReply, reply, 'script reply');
    const outcome = mapCode(REVOKE_CODES, code);
    if (outcome === 'missing') return null;
    const taskHashFields = pairs(taskFields);
    const record = recordOf(id, pairs(credentialFields), taskHashFields);
    if (record === undefined) return null;
    const credential = toCredential(
      id,
      taskId,
      parseStored(credentialHash, record, 'credential'),
      taskHashFields,
    );
    if (credential === null) return null;
    return {
      revoked: outcome === 'revoked',
      view: { credential, task: this.#liveTask(taskId, taskHashFields, now) },
    };
  }

  async listCredentials(filter: CredentialFilter, page: PageRequest): Promise<Page<CredentialView>> {
    assertLimit(page.limit);
    const after = decodeCursor(page.cursor, 'credential');
    const now = seconds(this.#clock);
    const keep = credentialFilterNarrows(filter)
      ? (view: CredentialView) => matchesCredential(filter, view, now)
      : undefined;
    const read = (keys: string[]) => this.#readCredentials(keys, now);
    if (filter.task !== undefined) {
      // The task's own zset: every credential of the task in listing order (one round trip for their issuedAt).
      const sorted = await this.#taskListingKeys(filter.task);
      const task = filter.task;
      const source: ScanSource<CredentialView> = {
        fetch: async (from, count) => sliceAfter(sorted, from, count),
        read: (keys) => this.#readCredentials(keys, now, task),
      };
      return scanPage(source, after, page.limit, keep);
    }
    const source = this.#listingSource('credentials', (keys) => this.#dropCredentialIndex(keys));
    return scanPage({ ...source, read }, after, page.limit, keep);
  }

  async listTasks(filter: TaskFilter, page: PageRequest): Promise<Page<TaskRecord>> {
    assertLimit(page.limit);
    const after = decodeCursor(page.cursor, 'task');
    const now = seconds(this.#clock);
    const narrows = filter.status !== undefined || filter.owner !== undefined;
    const source: ScanSource<TaskRecord> = {
      ...this.#listingSource('tasks'),
      read: async (keys) => {
        const ids = keys.map((key) => parseIndexKey(parseTaskKey, key).id);
        const hashes = await this.#pipeline(ids.map((id) => ['hgetall', this.#keys.task(id)]));
        return ids.map((id, i): Loaded<TaskRecord> => {
          const fields = parseStored(hashReply, hashes[i], 'hash');
          if (Object.keys(fields).length === 0) return 'gone';
          return this.#liveTask(id, fields, now) ?? 'hidden';
        });
      },
    };
    return scanPage(source, after, page.limit, narrows ? (task) => matchesTask(filter, task) : undefined);
  }

  async countTaskCredentials(id: string): Promise<number> {
    // Members still retained by the injected clock: expiresAt + retention > now.
    const floor = seconds(this.#clock) - this.#retention;
    const [count, inline] = await this.#pipeline([
      ['zcount', this.#keys.taskCredentials(id), `(${floor}`, '+inf'],
      ['hget', this.#keys.task(id), 'x'],
    ]);
    const inlineLive = inline !== null && parseStored(epoch, inline, 'task') > floor ? 1 : 0;
    return parseStored(z.number().int().nonnegative(), count, 'count') + inlineLive;
  }

  /** The two indexes of a listing: its buckets, and the single zset of brokers before them. */
  #listingIndexes(listing: 'credentials' | 'tasks'): { buckets: string; legacy: string } {
    const k = this.#keys;
    return listing === 'credentials'
      ? { buckets: k.credentialListing, legacy: k.legacyCredentialListing }
      : { buckets: k.taskListing, legacy: k.legacyTaskListing };
  }

  /** A listing's keys newest first (both its indexes merged), with lazy trimming of keys whose records are gone. */
  #listingSource(
    listing: 'credentials' | 'tasks',
    onDrop?: (keys: string[]) => Promise<void>,
  ): Pick<ScanSource<never>, 'fetch' | 'drop'> {
    const { buckets, legacy } = this.#listingIndexes(listing);
    return {
      fetch: async (from, count) => {
        const [bucketed, earlier] = await Promise.all([
          this.#readIndex(buckets, 'desc', from, count),
          this.#call(() =>
            this.#redis.zrevrangebylex(legacy, from === undefined ? '+' : `(${from}`, '-', 'LIMIT', 0, count),
          ),
        ]);
        const merged = [...bucketed, ...parseStored(stringList, earlier, 'index')];
        return merged.sort((a, b) => compareKeys(b, a)).slice(0, count);
      },
      drop: async (keys) => {
        await onDrop?.(keys);
        await this.#call(() => this.#scripts.writIndexRemove(buckets, legacy, ...keys));
      },
    };
  }

  /** Up to `count` members of a bucketed index strictly after `after` (from the end when undefined). */
  async #readIndex(
    index: string,
    order: 'asc' | 'desc',
    after: string | undefined,
    count: number,
  ): Promise<string[]> {
    const reply = await this.#call(() => this.#scripts.writIndexRange(index, order, after ?? '', count));
    return parseStored(stringList, reply, 'index');
  }

  /**
   * Forgets the id index fields of credentials whose records are gone (their listing keys): the bucket fields
   * have no TTL of their own. Before the listing entry goes, so that a crash in between leaves nothing behind.
   */
  async #dropCredentialIndex(keys: string[]): Promise<void> {
    const ids = keys.map((key) => parseIndexKey(parseCredentialKey, key).id);
    await this.#pipeline(ids.map((id) => ['hdel', this.#keys.credentialIndex(id), id]));
  }

  /** The listing keys of a task's credentials, newest first. */
  async #taskListingKeys(task: string): Promise<string[]> {
    // The task hash first (see #readCredentials): a first credential that moves out into the zset meanwhile is
    // seen in the task hash, in the zset, or both (listed once).
    const [taskReply, members] = await this.#pipeline([
      ['hgetall', this.#keys.task(task)],
      ['zrange', this.#keys.taskCredentials(task), '0', '-1'],
    ]);
    const ids = parseStored(stringList, members, 'task credentials');
    const taskFields = parseStored(hashReply, taskReply, 'hash');
    const keys: string[] = [];
    const inline = taskFields.k;
    if (inline !== undefined && !ids.includes(inline)) {
      // the task's only credential: its record in the task hash, or (brokers before) in its own
      const held = recordOf(inline, undefined, taskFields);
      if (held === undefined) ids.push(inline);
      else keys.push(credentialKey({ issuedAt: parseStored(epoch, held.i, 'task'), id: inline }));
    }
    const issued = await this.#pipeline(ids.map((id) => ['hget', this.#keys.credential(task, id), 'i']));
    ids.forEach((id, i) => {
      const value = issued[i];
      if (value === null || value === undefined) return; // dropped: the listing skips it
      keys.push(credentialKey({ issuedAt: parseStored(epoch, value, 'credential'), id }));
    });
    return keys.sort((a, b) => compareKeys(b, a));
  }

  /**
   * Each listing key parsed, with its task: the task's own listing knows it (`task`), keys of the earlier form
   * hold it, the others are looked up in the id index (one round trip). Null when the index has no entry.
   */
  async #tasksOfListingKeys(
    keys: string[],
    task?: string,
  ): Promise<[{ issuedAt: number; id: string }, string | null][]> {
    const parsed = keys.map((key) => parseIndexKey(parseCredentialKey, key));
    const unknown = parsed.filter((p) => (task ?? p.task) === undefined);
    const found = await this.#pipeline(unknown.map((p) => ['hget', this.#keys.credentialIndex(p.id), p.id]));
    const looked = new Map(
      unknown.map((p, i) => [p.id, parseStored(z.string().nullable(), found[i] ?? null, 'credential index')]),
    );
    return parsed.map((p) => [p, task ?? p.task ?? looked.get(p.id) ?? null]);
  }

  async #readCredentials(keys: string[], now: number, task?: string): Promise<Loaded<CredentialView>[]> {
    const withTasks = await this.#tasksOfListingKeys(keys, task);
    const parsed = withTasks
      .filter((entry): entry is [{ issuedAt: number; id: string }, string] => entry[1] !== null)
      .map(([p, t]) => ({ id: p.id, task: t }));
    const tasks = [...new Set(parsed.map((p) => p.task))];
    // The task hashes first: a pipeline is not atomic, and a task's only credential moves out of its task hash
    // into a hash of its own when a second one joins (never back). Read in this order, a record that moves
    // meanwhile is found in one place or the other; read the other way round, it could be in neither, and
    // would be taken for dropped (its listing and id index entries removed, a bulk revocation missing it).
    const replies = await this.#pipeline([
      ...tasks.map((t): [string, ...string[]] => ['hgetall', this.#keys.task(t)]),
      ...parsed.map((p): [string, ...string[]] => ['hgetall', this.#keys.credential(p.task, p.id)]),
    ]);
    const taskViews = new Map<string, TaskRecord | null>();
    const taskHashes = new Map<string, Record<string, string>>();
    tasks.forEach((t, i) => {
      const fields = parseStored(hashReply, replies[i], 'hash');
      taskHashes.set(t, fields);
      taskViews.set(t, this.#liveTask(t, fields, now));
    });
    let i = -1;
    return withTasks.map(([, found]): Loaded<CredentialView> => {
      if (found === null) return 'gone'; // not in the id index: dropped
      const p = parsed[++i]!;
      const taskFields = taskHashes.get(p.task);
      const record = recordOf(p.id, parseStored(hashReply, replies[tasks.length + i], 'hash'), taskFields);
      if (record === undefined) return 'gone';
      const credential = toCredential(
        p.id,
        p.task,
        parseStored(credentialHash, record, 'credential'),
        taskFields,
      );
      if (credential === null) return 'gone';
      if (now >= credential.expiresAt + this.#retention) return 'hidden';
      return { credential, task: taskViews.get(p.task) ?? null };
    });
  }

  // ---- the revocation feed

  async readRevocations(since: string | undefined, limit: number): Promise<RevocationEvent[]> {
    assertLimit(limit, MAX_FEED_READ);
    let start = '-';
    if (since !== undefined) {
      const position = formatFeedPosition(parseFeedPosition(since));
      if (position === MAX_STREAM_ID) return [];
      start = `(${position}`;
    }
    const reply = await this.#call(() =>
      this.#redis.xrange(this.#keys.revocations, start, '+', 'COUNT', limit),
    );
    return toEvents(parseStored(streamEntries, reply, 'revocation feed'));
  }

  /**
   * A blocking XREAD on the store's own connection. Meant for one reader at a time (the feed hub): waits share
   * that connection, so concurrent waits queue behind each other, and aborting one (which closes the
   * connection, the only way to cut a blocked XREAD short) fails the others with ERR_STORE_UNAVAILABLE.
   */
  async waitForRevocations(since: string, blockMs: number, signal?: AbortSignal): Promise<RevocationEvent[]> {
    assertBlockMs(blockMs);
    const from = since === '$' ? '$' : formatFeedPosition(parseFeedPosition(since));
    if (signal?.aborted) return [];
    let connection: Promise<Redis> | undefined;
    const read = async () => {
      connection = this.#blockingConnection();
      const redis = await connection;
      if (signal?.aborted) return null;
      const key = this.#keys.revocations;
      return blockMs > 0
        ? redis.xread('COUNT', WAIT_COUNT, 'BLOCK', blockMs, 'STREAMS', key, from)
        : redis.xread('COUNT', WAIT_COUNT, 'STREAMS', key, from);
    };
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<'aborted'>((resolve) => {
      onAbort = () => resolve('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const reply = await this.#call(() => Promise.race([read(), aborted]), blockMs + this.#timeoutMs);
      if (reply === 'aborted' || signal?.aborted) {
        if (connection !== undefined) this.#dropBlocking(connection); // a new one is made for the next wait
        return [];
      }
      const streams = parseStored(xreadReply, reply, 'revocation feed');
      return toEvents(streams?.[0]?.[1] ?? []);
    } catch (error) {
      // A failed or timed-out blocking read leaves the connection in doubt: start afresh next time.
      if (connection !== undefined) this.#dropBlocking(connection);
      if (signal?.aborted) return [];
      throw error;
    } finally {
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  async lastRevocationId(): Promise<string> {
    const reply = await this.#call(() => this.#redis.xrevrange(this.#keys.revocations, '+', '-', 'COUNT', 1));
    return parseStored(streamEntries, reply, 'revocation feed')[0]?.[0] ?? '0-0';
  }

  /** Drops feed events older than `before`, then trims the listing indexes of records Redis has dropped. */
  async trimRevocations(before: number): Promise<void> {
    assertEpoch('before', before);
    await this.#call(() => this.#redis.xtrim(this.#keys.revocations, 'MINID', Math.max(0, before) * 1000));
    await this.#trimListing(
      'credentials',
      (keys) => this.#credentialsHeld(keys),
      (keys) => this.#dropCredentialIndex(keys),
    );
    await this.#trimListing('tasks', async (keys) => {
      const exists = await this.#pipeline(
        keys.map((key) => ['exists', this.#keys.task(parseIndexKey(parseTaskKey, key).id)]),
      );
      return exists.map((n) => n !== 0);
    });
  }

  /**
   * Whether each listed credential's record is still held: its own hash exists (Redis drops it at expiresAt +
   * retention), or the task hash holds it and it is not past expiresAt + retention by the injected clock. A record
   * kept in the task hash has no TTL of its own: its fields are dropped here when it is past that.
   */
  async #credentialsHeld(keys: string[]): Promise<boolean[]> {
    const withTasks = await this.#tasksOfListingKeys(keys);
    const replies = await this.#pipeline(
      withTasks.flatMap(([p, task]): [string, ...string[]][] =>
        task === null
          ? []
          : [
              // The task hash first (see #readCredentials): a record moving out meanwhile is seen in one place.
              ['hmget', this.#keys.task(task), 'k', 'x', 'y'],
              ['exists', this.#keys.credential(task, p.id)],
            ],
      ),
    );
    const floor = seconds(this.#clock) - this.#retention;
    const past: [string, string][] = [];
    let i = 0;
    const held = withTasks.map(([p, task]) => {
      if (task === null) return false;
      const [k, x, y] = parseStored(markValues, replies[i++], 'task');
      const exists = replies[i++];
      if (exists !== 0) return true;
      if (k !== p.id || y === null || y === undefined) return false;
      if (parseStored(epoch, x, 'task') > floor) return true;
      past.push([task, p.id]);
      return false;
    });
    await this.#pipeline(
      past.map(([task, id]) => [
        'eval',
        DROP_INLINE,
        2,
        this.#keys.task(task),
        this.#keys.taskCredentials(task),
        id,
        floor,
      ]),
    );
    return held;
  }

  /**
   * Removes index entries whose record Redis has dropped, oldest first (the oldest are the first to go), in
   * batches; bounded per call. A batch that finds none does not end the call: it goes on from where the
   * previous call stopped (wrapping at the end), so that a run of live records at the front (long-lived
   * credentials) never hides dropped ones behind it from every later sweep. (The id index fields have no TTL:
   * they go with these entries.)
   */
  async #trimListing(
    listing: 'credentials' | 'tasks',
    /** Whether the record of each listing key is still held. */
    held: (keys: string[]) => Promise<boolean[]>,
    onGone?: (keys: string[]) => Promise<void>,
  ): Promise<void> {
    const { buckets, legacy } = this.#listingIndexes(listing);
    const drop = async (gone: string[]) => {
      await onGone?.(gone);
      await this.#call(() => this.#scripts.writIndexRemove(buckets, legacy, ...gone));
    };
    await this.#trimIndex(
      buckets,
      (after, count) => this.#readIndex(buckets, 'asc', after, count),
      held,
      drop,
    );
    await this.#trimIndex(
      legacy,
      async (after, count) =>
        parseStored(
          stringList,
          await this.#call(() =>
            this.#redis.zrangebylex(legacy, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, count),
          ),
          'index',
        ),
      held,
      drop,
    );
  }

  async #trimIndex(
    index: string,
    /** Up to `count` keys of the index in ascending order, strictly after `after` (from the start when undefined). */
    read: (after: string | undefined, count: number) => Promise<string[]>,
    held: (keys: string[]) => Promise<boolean[]>,
    drop: (keys: string[]) => Promise<void>,
  ): Promise<void> {
    const BATCH = 200;
    let after: string | undefined;
    let resumed = false;
    // 10 batches per call, and one more for each batch that found dropped records (at most 200 batches, 40,000
    // entries): a backlog from sustained issuance is worked off at up to ~1,300 records/s at the default sweep
    // interval, while an index with nothing to drop costs 10 reads.
    let budget = 10;
    for (let round = 0; round < budget; round++) {
      const keys = await read(after, BATCH);
      if (keys.length === 0) {
        this.#trimFrom.delete(index);
        return;
      }
      const alive = await held(keys);
      const gone = keys.filter((_, i) => !alive[i]);
      if (gone.length > 0) {
        await drop(gone);
        budget = Math.min(200, budget + 1);
      }
      if (keys.length < BATCH) {
        this.#trimFrom.delete(index); // the end: the next call starts over
        return;
      }
      after = keys[keys.length - 1]!;
      if (gone.length === 0 && !resumed) {
        // past the front's dropped records: on from where the last call stopped, when that is further
        resumed = true;
        const saved = this.#trimFrom.get(index);
        if (saved !== undefined && compareKeys(saved, after) > 0) after = saved;
      }
    }
    if (after !== undefined) this.#trimFrom.set(index, after);
  }

  async pendingTasks(now: number, limit: number): Promise<{ ending: string[]; overdue: string[] }> {
    assertEpoch('now', now);
    assertLimit(limit);
    const k = this.#keys;
    const due = parseStored(
      stringList,
      await this.#call(() =>
        this.#scripts.writDueTasks(k.tasksDue, k.taskListing, now, limit, `${this.#prefix}{t:`),
      ),
      'due tasks',
    );
    const [ending, legacy] = (
      await this.#pipeline([
        ['zrange', k.tasksEnding, '0', String(limit - 1)],
        [
          'zrangebyscore',
          k.legacyTaskDeadlines,
          '-inf',
          String(now),
          'WITHSCORES',
          'LIMIT',
          '0',
          String(limit),
        ],
      ])
    ).map((reply) => parseStored(stringList, reply, 'task queue')) as [string[], string[]];
    // Entries of tasks Redis has dropped are removed here rather than handed to the sweeper (the task index's
    // due buckets read the task hashes themselves).
    const legacyIds = legacy.filter((_, i) => i % 2 === 0);
    const ids = [...ending, ...legacyIds];
    const exists = ids.length === 0 ? [] : await this.#pipeline(ids.map((id) => ['exists', k.task(id)]));
    const goneEnding = ending.filter((_, i) => exists[i] === 0);
    const goneLegacy = legacyIds.filter((_, i) => exists[ending.length + i] === 0);
    if (goneEnding.length > 0) await this.#call(() => this.#redis.zrem(k.tasksEnding, ...goneEnding));
    if (goneLegacy.length > 0) await this.#call(() => this.#redis.zrem(k.legacyTaskDeadlines, ...goneLegacy));
    // overdue by deadline, then id (as the deadlines zset of brokers before ordered them)
    const deadlines = new Map<string, number>();
    for (const flat of [due, legacy]) {
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const id = flat[i]!;
        if (goneLegacy.includes(id)) continue;
        deadlines.set(id, parseStored(epoch, flat[i + 1], 'due tasks'));
      }
    }
    const overdue = [...deadlines]
      .sort(([a, da], [b, db]) => da - db || compareKeys(a, b))
      .slice(0, limit)
      .map(([id]) => id);
    return { ending: ending.filter((_, i) => exists[i] !== 0), overdue };
  }

  /** The blocking connection, made on first use (lazyConnect, so that it works with any client options). */
  #blockingConnection(): Promise<Redis> {
    if (this.#blocking === undefined) {
      const duplicate = this.#redis.duplicate({ lazyConnect: true });
      // A blocked read is silent for up to blockMs: per-command and socket timeouts of the caller's client
      // would cut it short (this store bounds every wait itself).
      delete duplicate.options.commandTimeout;
      delete duplicate.options.socketTimeout;
      duplicate.on('error', () => {}); // reported through the calls that fail
      const connecting = duplicate.connect().then(
        () => duplicate,
        (error: unknown) => {
          duplicate.disconnect();
          if (this.#blocking === connecting) this.#blocking = undefined;
          throw error;
        },
      );
      connecting.catch(() => {}); // whoever awaits it reports the failure
      this.#blocking = connecting;
    }
    return this.#blocking;
  }

  #dropBlocking(connection: Promise<Redis>): void {
    if (this.#blocking === connection) this.#blocking = undefined;
    connection.then(
      (redis) => redis.disconnect(),
      () => {},
    );
  }

  /** Runs commands in one pipeline (one round trip, not a transaction); the replies, in order. */
  async #pipeline(commands: [string, ...(string | number)[]][]): Promise<unknown[]> {
    if (commands.length === 0) return [];
    return this.#call(async () => {
      const replies = await this.#redis.pipeline(commands).exec();
      if (replies === null) throw new Error('pipeline aborted');
      return replies.map(([error, value]) => {
        if (error) throw error;
        return value;
      });
    });
  }

  // ---- shared key material

  // ---- ephemeral state (single keys: cluster-safe as they are)

  #ephemeralKey(kind: 'once' | 'eph' | 'hit', scope: string, key: string): string {
    if (!/^[a-z0-9_]{1,32}$/.test(scope)) throw new TypeError('invalid ephemeral scope');
    if (typeof key !== 'string' || key.length === 0 || key.length > 256)
      throw new TypeError('invalid ephemeral key');
    return this.#keys.ephemeral(kind, scope, key);
  }

  async markOnce(scope: string, key: string, expiresAt: number): Promise<boolean> {
    const k = this.#ephemeralKey('once', scope, key);
    // The mark must outlive the evidence it guards by the injected clock; the key's own expiry is real time.
    const expireAt = Math.max(expiresAt, realSeconds() + 1);
    const reply = await this.#call(() =>
      this.#redis.eval(MARK_ONCE, 1, k, seconds(this.#clock), expiresAt, expireAt),
    );
    return reply === 1;
  }

  async heldMarks(scope: string, keys: readonly string[]): Promise<boolean[]> {
    if (keys.length === 0) return [];
    const names = keys.map((key) => this.#ephemeralKey('once', scope, key));
    const values = await this.#readStrings(names);
    // A mark holds its expiresAt by the injected clock (see MARK_ONCE); the key itself may outlive it.
    const now = seconds(this.#clock);
    return values.map((value) => value !== null && Number(value) > now);
  }

  async putEphemeral(scope: string, key: string, value: string, expiresAt: number): Promise<void> {
    const k = this.#ephemeralKey('eph', scope, key);
    const json = JSON.stringify({ v: value, e: expiresAt });
    await this.#call(() => this.#redis.set(k, json, 'EXAT', Math.max(expiresAt, realSeconds() + 1)));
  }

  async takeEphemeral(scope: string, key: string): Promise<string | null> {
    const k = this.#ephemeralKey('eph', scope, key);
    return this.#readEphemeral(await this.#call(() => this.#redis.getdel(k)));
  }

  async getEphemeral(scope: string, key: string): Promise<string | null> {
    const k = this.#ephemeralKey('eph', scope, key);
    return this.#readEphemeral(await this.#call(() => this.#redis.get(k)));
  }

  async swapEphemeral(
    scope: string,
    key: string,
    expected: string,
    value: string,
    expiresAt: number,
  ): Promise<boolean> {
    const k = this.#ephemeralKey('eph', scope, key);
    const json = JSON.stringify({ v: value, e: expiresAt });
    const reply = await this.#call(() =>
      this.#redis.eval(
        SWAP_EPHEMERAL,
        1,
        k,
        expected,
        json,
        seconds(this.#clock),
        Math.max(expiresAt, realSeconds() + 1),
      ),
    );
    return reply === 1;
  }

  #readEphemeral(json: string | null): string | null {
    if (json === null) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (cause) {
      throw malformed('ephemeral value', cause);
    }
    const entry = parseStored(
      z.strictObject({ v: z.string(), e: z.number().int() }),
      parsed,
      'ephemeral value',
    );
    return entry.e <= seconds(this.#clock) ? null : entry.v;
  }

  async countHit(scope: string, key: string, windowSeconds: number): Promise<number> {
    if (!Number.isSafeInteger(windowSeconds) || windowSeconds < 1) throw new TypeError('invalid window');
    const window = Math.floor(seconds(this.#clock) / windowSeconds);
    const k = this.#ephemeralKey('hit', scope, `${key}:${window}`);
    const replies = await this.#call(() =>
      this.#redis
        .multi()
        .incr(k)
        .expireat(k, Math.max((window + 1) * windowSeconds, realSeconds() + 1) + 1)
        .exec(),
    );
    const count = replies?.[0]?.[1];
    if (typeof count !== 'number') throw malformed('counter', new Error('no INCR reply'));
    return count;
  }

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

  async swapKeyMaterial(
    name: string,
    expected: string | null,
    value: string,
    opts: { alsoDelete?: string | undefined } = {},
  ): Promise<boolean> {
    if (value === '') throw new TypeError('key material cannot be empty');
    const reply = await this.#call(() =>
      this.#scripts.writSwapKeyMaterial(
        this.#keys.keyMaterial(name),
        this.#keys.keyMaterial(opts.alsoDelete ?? name),
        expected ?? '',
        value,
      ),
    );
    return reply === 1;
  }

  async nextSequence(name: string, floor = 0): Promise<number> {
    assertSequenceName(name);
    assertSequenceFloor(floor);
    const value = await this.#call(() =>
      floor > 0
        ? this.#scripts.writNextSequence(this.#keys.sequence(name), String(floor))
        : this.#redis.incr(this.#keys.sequence(name)),
    );
    return parseStored(z.number().int().min(1).max(Number.MAX_SAFE_INTEGER), value, 'sequence');
  }

  async ping(): Promise<void> {
    const reply = await this.#call(() => this.#redis.ping());
    if (reply !== 'PONG')
      throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('bad PING reply') });
  }

  /**
   * Stops this store: later calls fail with ERR_STORE_UNAVAILABLE. The caller's connection stays open; the
   * store's own blocking connection is closed (a wait in progress fails with ERR_STORE_UNAVAILABLE).
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#blocking !== undefined) this.#dropBlocking(this.#blocking);
  }

  /**
   * Plain string reads made in the same event-loop turn share one MGET: an issuance's rate-limit marks and the
   * entries' version (started one after the other as its request arrives) are one command, not two. Each caller
   * gets its own slice, or the batch's error.
   */
  #readStrings(keys: readonly string[]): Promise<(string | null)[]> {
    return new Promise((resolve, reject) => {
      let batch = this.#reads;
      if (batch === undefined) {
        const fresh: StringReads = { keys: [], callers: [] };
        batch = fresh;
        this.#reads = fresh;
        queueMicrotask(() => {
          this.#reads = undefined;
          this.#call(() => this.#redis.mget(...fresh.keys)).then(
            (reply) => {
              let values: (string | null)[];
              try {
                values = parseStored(markValues, reply, 'string values');
                if (values.length !== fresh.keys.length) throw malformed('string values');
              } catch (e) {
                for (const c of fresh.callers) c.reject(e);
                return;
              }
              for (const c of fresh.callers) c.resolve(values.slice(c.at, c.at + c.count));
            },
            (e: unknown) => {
              for (const c of fresh.callers) c.reject(e);
            },
          );
        });
      }
      batch.callers.push({ at: batch.keys.length, count: keys.length, resolve, reject });
      batch.keys.push(...keys);
    });
  }

  /** Runs one Redis exchange: bounded in time, with every failure mapped to a WritError. */
  async #call<T>(op: () => Promise<T>, timeoutMs = this.#timeoutMs): Promise<T> {
    if (this.#closed) {
      throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('the store is closed') });
    }
    return callRedis(op, timeoutMs);
  }
}

// ---- encoding helpers

function realSeconds(): number {
  return Math.floor(Date.now() / 1000);
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

/** Cached entries are shared by every caller: frozen, so that none can change another's view. */
function freezeEntry(entry: RegistrationEntry): RegistrationEntry {
  Object.freeze(entry.selectors);
  if (entry.audiences !== undefined) Object.freeze(entry.audiences);
  return Object.freeze(entry);
}

function byCreation(a: RegistrationEntry, b: RegistrationEntry): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function credentialFields(c: CredentialRecord): string[] {
  const f = CREDENTIAL_FIELDS;
  // the SPIFFE ID is passed apart: the script stores it only when it is not the task owner's
  const fields = [
    f.type,
    c.type,
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

/**
 * A credential's record: its own hash, or the task hash's fields when the task keeps it there (its only credential,
 * `k`, with a `y`). Undefined when neither holds it.
 */
function recordOf(
  id: string,
  own: Record<string, string> | undefined,
  taskFields: Record<string, string> | undefined,
): Record<string, string> | undefined {
  if (own !== undefined && Object.keys(own).length > 0) return own;
  if (taskFields?.k !== id || taskFields.y === undefined) return undefined;
  const record: Record<string, string> = {};
  for (const [name, field] of Object.entries(INLINE_FIELDS)) {
    const value = taskFields[field];
    if (value !== undefined) record[name] = value;
  }
  return record;
}

/**
 * The credential a hash holds; its SPIFFE ID is the task owner's unless stored. Null when it is neither (the task
 * hash is gone, which TTLs never do before the credential's: the record is read as gone).
 */
function toCredential(
  id: string,
  task: string,
  h: z.output<typeof credentialHash>,
  taskFields: Record<string, string> | undefined,
): CredentialRecord | null {
  const spiffeId = h.s ?? taskFields?.o;
  if (spiffeId === undefined) return null;
  const credential: CredentialRecord = {
    id,
    type: h.y,
    spiffeId,
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

/** A listing key read back from an index; server_error when it is not well formed. */
function parseIndexKey<T>(parse: (key: string) => T | null, key: string): T {
  const parsed = parse(key);
  if (parsed === null) throw malformed('index entry', new Error('bad listing key'));
  return parsed;
}

function toEvents(entries: z.output<typeof streamEntries>): RevocationEvent[] {
  return entries.map(([id, flat]): RevocationEvent => {
    const h = parseStored(eventHash, pairs(flat), 'revocation event');
    const common = { task: h.t, expiresAt: h.x, reason: h.r, revokedAt: h.v };
    return h.k === 'c'
      ? { id, kind: 'credential', credential: h.c, credentialType: h.y, ...common }
      : { id, kind: 'task', ...common };
  });
}

function pairs(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}
