// Redis adapter of the AuditLog: one hash chain in one stream, extended by compare-and-append from any replica.
//
// Data model (`<p>` is the prefix, `writ:` by default):
//   <p>audit        stream  one entry per record, entry id `<seq>-0` (so a page `after` a seq is one XRANGE).
//                           Written in the compact format (below); records in the first format (fields seq,
//                           time, type, actor, [subject], [decision], [policies] (JSON array), [details] (JSON
//                           object), prev, hash) are still read and verified, alone or mixed with compact ones.
//                           Never trimmed unless `maxLen` is set.
//   <p>audit:head   hash    seq, hash of the newest record (and the id of the batch that wrote it): the chain head, written with every append. It lets
//                           verify notice a truncated trail, and keeps a deleted stream from restarting at genesis.
// The compact format stores what cannot be derived: no seq (the entry id is `<seq>-0`), no hash (it is the hash
// of the record, which holds its prev: the next record's prev, or the head for the newest, vouches for it), the
// prev as base64url of its 32 bytes, one-letter names (t time, y type, a actor, s subject, d decision, p policies
// as JSON, l prev, last), and details one field per key with its type in the name (`x.<key>` string, `n.<key>`
// number, `j.<key>` JSON: boolean, null, array; an empty details object is `e` = `{}`). Records of the same shape
// then share their field names in the stream's listpacks (Redis stores them once per node). The hash is over the
// record itself (canonical JSON, audit-log.ts), never over this encoding: re-encoding changes no hash. The first
// field tells the formats apart (`seq`: the first format, `t`: compact); a record that mixes the two, repeats a
// field or carries one the format does not have is malformed (a broken link).
// Why a stream: records are append-only and ordered, pageable by id, and can be followed with XREAD by an
// external shipper. Redis can still be rewritten by whoever has write access (XDEL, or DEL and re-XADD with
// chosen ids); that is what the hash chain makes evident, and what the tests do.
//
// Appending (group commit): appends that arrive while this instance's previous write is in flight wait for it,
// then all go in the next single script call, in call order. The client reads the head (cached after its own
// appends), seals the batch on it (seq = head + 1, prev = head hash, each next record linked to the one before),
// computes the SHA-256s (Redis Lua has no SHA-256) and runs lua/append-batch-2.lua, which writes the whole batch
// only if the head is still the one it was built on; otherwise it returns the current head and the client
// re-seals and retries. Each append resolves only once its batch is in Redis, and every append of a batch that
// could not be written fails (fail closed): one write in flight per instance, so only other replicas make it
// retry, and a busy broker spends one round trip on many records.
// Like the credential store this targets a standalone Redis: the two keys have no common hash tag.
// Failures: as the credential store, fail closed (ERR_STORE_UNAVAILABLE; an unanswered append may still land).

import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { WritError } from '../errors.ts';
import { callRedis, defineScripts, malformed } from '../store/redis/redis-call.ts';
import { type Clock, systemClock } from '../store/types.ts';
import {
  type AuditEvent,
  type AuditHead,
  type AuditLog,
  type AuditPage,
  type AuditPageRequest,
  type AuditRecord,
  type AuditVerifyRange,
  type AuditVerifyResult,
  type ChainSource,
  checkEvent,
  checkPageRequest,
  DETAIL_KEY_PATTERN,
  GENESIS_HASH,
  parseAuditRecord,
  recordHash,
  type StoredSlot,
  sealRecord,
  toPage,
  verifyChain,
} from './audit-log.ts';

export interface RedisAuditLogOptions {
  /** Owned by the caller: never closed here. */
  redis: Redis;
  /** Key prefix; default `writ:`. */
  prefix?: string;
  clock?: Clock;
  /**
   * Trim the stream to this many records (MAXLEN =) on every append. Unset by default: the trail is kept
   * whole. A trimmed trail verifies from its oldest retained record (export records before they go).
   */
  maxLen?: number | undefined;
  /** A call that gets no answer within this many ms fails with ERR_STORE_UNAVAILABLE; default 2000. */
  commandTimeoutMs?: number;
  /** Compare-and-append attempts before an append gives up with ERR_STORE_UNAVAILABLE; default 100. */
  maxAppendAttempts?: number;
}

export function auditKeys(prefix: string) {
  return { stream: `${prefix}audit`, head: `${prefix}audit:head` };
}

const SCRIPTS = { writAuditAppendBatch: 'append-batch-2.lua' } as const;

/** Most records in one script call; more wait for the next. */
const MAX_BATCH = 256;

interface PendingAppend {
  event: Omit<AuditRecord, 'seq' | 'time' | 'prev' | 'hash'>;
  resolve: (record: AuditRecord) => void;
  reject: (error: unknown) => void;
}

const APPEND_CODES = { 1: 'appended', 0: 'moved', [-1]: 'head_missing' } as const;

const appendReply = z.tuple([
  z.number().int(),
  z.string().regex(/^\d+$/).transform(Number),
  z.string().regex(/^[0-9a-f]{64}$/),
]);
const headReply = z.tuple([z.string().nullable(), z.string().nullable()]);
const streamEntries = z.array(z.tuple([z.string(), z.array(z.string())]));

export class RedisAuditLog implements AuditLog {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #scripts: ReturnType<typeof defineScripts<keyof typeof SCRIPTS>>;
  readonly #keys: ReturnType<typeof auditKeys>;
  readonly #clock: Clock;
  readonly #maxLen: number | undefined;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  /** The head after this instance's last append; a guess (another replica may have moved it). */
  #head: AuditHead | undefined;
  /** Appends waiting for the next batch, in call order. */
  #pending: PendingAppend[] = [];
  /** True while a batch is being written: appends made meanwhile wait for the next one. */
  #writing = false;

  constructor(opts: RedisAuditLogOptions) {
    if (opts.maxLen !== undefined && (!Number.isSafeInteger(opts.maxLen) || opts.maxLen < 1)) {
      throw new TypeError('maxLen must be a positive integer');
    }
    const attempts = opts.maxAppendAttempts ?? 100;
    if (!Number.isSafeInteger(attempts) || attempts < 1) {
      throw new TypeError('maxAppendAttempts must be a positive integer');
    }
    this.#redis = opts.redis;
    this.#scripts = defineScripts(opts.redis, new URL('./lua/', import.meta.url), SCRIPTS);
    this.#keys = auditKeys(opts.prefix ?? 'writ:');
    this.#clock = opts.clock ?? systemClock;
    this.#maxLen = opts.maxLen;
    this.#timeoutMs = opts.commandTimeoutMs ?? 2000;
    this.#maxAttempts = attempts;
  }

  async append(event: AuditEvent): Promise<AuditRecord> {
    const checked = checkEvent(event);
    return new Promise<AuditRecord>((resolve, reject) => {
      this.#pending.push({ event: checked, resolve, reject });
      if (!this.#writing) void this.#drain();
    });
  }

  /** Writes the pending appends batch after batch until none is left; one batch in flight at a time. */
  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, MAX_BATCH);
        try {
          const records = await this.#appendBatch(batch.map((p) => p.event));
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(records[i]!);
        } catch (error) {
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Seals `events` as consecutive records on `head`: each record's prev is the hash of the one before. */
  #seal(events: PendingAppend['event'][], head: AuditHead): AuditRecord[] {
    const time = this.#clock();
    const records: AuditRecord[] = [];
    let at = head;
    for (const event of events) {
      const record = sealRecord(event, at, time);
      records.push(record);
      at = { seq: record.seq, hash: record.hash };
    }
    return records;
  }

  async #appendBatch(events: PendingAppend['event'][]): Promise<AuditRecord[]> {
    let head = this.#head ?? (await this.head());
    this.#head = undefined; // until this batch is known to have landed
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      const records = this.#seal(events, head);
      const first = records[0]!;
      const last = records[records.length - 1]!;
      const args: (string | number)[] = [
        first.prev,
        first.seq,
        last.hash,
        this.#maxLen ?? 0,
        records.length,
        randomUUID(),
      ];
      for (const record of records) {
        const fields = auditEntryFields(record);
        args.push(fields.length, ...fields);
      }
      const raw = await this.#call(() =>
        this.#scripts.writAuditAppendBatch(this.#keys.stream, this.#keys.head, ...args),
      );
      const parsed = appendReply.safeParse(raw);
      if (!parsed.success) throw malformed('audit append reply', parsed.error);
      const [code, seq, hash] = parsed.data;
      const outcome = (APPEND_CODES as Record<number, string>)[code];
      if (outcome === 'appended') {
        this.#head = { seq, hash };
        return records;
      }
      if (outcome === 'head_missing') {
        throw new WritError('server_error', undefined, {
          cause: new Error('the audit chain head is missing while the stream holds records; see docs'),
        });
      }
      if (outcome !== 'moved') throw malformed('audit append reply', new Error(`unknown code ${code}`));
      head = { seq, hash };
    }
    throw new WritError('ERR_STORE_UNAVAILABLE', undefined, {
      cause: new Error(`audit append lost the race ${this.#maxAttempts} times`),
    });
  }

  async page(request: AuditPageRequest): Promise<AuditPage> {
    const { after, limit } = checkPageRequest(request);
    const records = (await this.#read(after + 1, limit)).map((slot) => {
      if ('problem' in slot) throw malformed('audit record', new Error(slot.problem));
      return slot.record;
    });
    return toPage(records, limit);
  }

  async verify(range?: AuditVerifyRange): Promise<AuditVerifyResult> {
    const source: ChainSource = {
      bounds: () => this.#bounds(),
      head: () => this.head(),
      read: (from, limit) => this.#read(from, limit),
    };
    return verifyChain(source, range, this.#maxLen !== undefined);
  }

  async head(): Promise<AuditHead> {
    const raw = await this.#call(() => this.#redis.hmget(this.#keys.head, 'seq', 'hash'));
    const parsed = headReply.safeParse(raw);
    if (!parsed.success) throw malformed('audit head', parsed.error);
    const [seq, hash] = parsed.data;
    if (seq === null && hash === null) return { seq: 0, hash: GENESIS_HASH };
    if (seq === null || !/^\d+$/.test(seq) || hash === null || !/^[0-9a-f]{64}$/.test(hash)) {
      throw malformed('audit head');
    }
    return { seq: Number(seq), hash };
  }

  async #bounds(): Promise<{ oldest: number; newest: number } | null> {
    const [first, last] = await this.#call(() =>
      Promise.all([
        this.#redis.xrange(this.#keys.stream, '-', '+', 'COUNT', 1),
        this.#redis.xrevrange(this.#keys.stream, '+', '-', 'COUNT', 1),
      ]),
    );
    const oldest = first[0]?.[0];
    const newest = last[0]?.[0];
    if (oldest === undefined || newest === undefined) return null;
    return { oldest: idPosition(oldest), newest: idPosition(newest) };
  }

  /** Up to `limit` stream entries with id >= `<from>-0`, each decoded or marked unreadable. */
  async #read(from: number, limit: number): Promise<StoredSlot[]> {
    const raw = await this.#call(() =>
      this.#redis.xrange(this.#keys.stream, `${from}-0`, '+', 'COUNT', limit),
    );
    const parsed = streamEntries.safeParse(raw);
    if (!parsed.success) throw malformed('audit stream', parsed.error);
    return parsed.data.map(([id, flat]): StoredSlot => {
      const position = idPosition(id);
      if (!/^\d+-0$/.test(id)) return { position, problem: `the stream id ${id} is not <seq>-0` };
      const decoded = fromFields(position, flat);
      return decoded === null
        ? { position, problem: 'the record is malformed' }
        : { position, record: decoded.record, derived: decoded.derived };
    });
  }

  #call<T>(op: () => Promise<T>): Promise<T> {
    return callRedis(op, this.#timeoutMs);
  }
}

// ---- encoding

/** The compact stream fields of a record (see the header): what cannot be derived from the entry id or hash. */
export function auditEntryFields(record: AuditRecord): string[] {
  const fields = ['t', String(record.time), 'y', record.type, 'a', record.actor];
  if (record.subject !== undefined) fields.push('s', record.subject);
  if (record.decision !== undefined) fields.push('d', record.decision);
  if (record.policies !== undefined) fields.push('p', JSON.stringify(record.policies));
  if (record.details !== undefined) {
    const entries = Object.entries(record.details);
    if (entries.length === 0) fields.push('e', '{}');
    for (const [key, value] of entries) {
      if (typeof value === 'string') fields.push(`x.${key}`, value);
      else if (typeof value === 'number') fields.push(`n.${key}`, JSON.stringify(value));
      else fields.push(`j.${key}`, JSON.stringify(value));
    }
  }
  fields.push('l', Buffer.from(record.prev, 'hex').toString('base64url'));
  return fields;
}

/** The record a stream entry holds (either format), or null when it is not a well-formed record. */
function fromFields(position: number, flat: string[]): { record: AuditRecord; derived: boolean } | null {
  if (flat.length % 2 !== 0 || flat.length === 0) return null;
  if (flat[0] === 'seq') {
    const record = fromFirstFormat(flat);
    return record === null ? null : { record, derived: false };
  }
  if (flat[0] !== 't') return null;
  const record = fromCompact(position, flat);
  return record === null ? null : { record, derived: true };
}

const INTEGER = /^-?\d{1,16}$/;
// JSON.stringify of a finite number, as toFields writes it
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?(e[+-]\d+)?$/;
const BASE64URL_32 = /^[A-Za-z0-9_-]{43}$/;
const COMPACT_NAMES: Record<string, string> = {
  t: 'time',
  y: 'type',
  a: 'actor',
  s: 'subject',
  d: 'decision',
  p: 'policies',
  l: 'prev',
};

function fromCompact(position: number, flat: string[]): AuditRecord | null {
  const object: Record<string, unknown> = {};
  const seen = new Set<string>();
  let details: Record<string, unknown> | undefined;
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    const value = flat[i + 1]!;
    if (seen.has(name)) return null;
    seen.add(name);
    const tag = name.length > 2 && name[1] === '.' ? name[0] : undefined;
    if (tag !== undefined) {
      // one details key per field; `e` (empty details) excludes them
      if (seen.has('e')) return null;
      details ??= {};
      const key = name.slice(2);
      if (!DETAIL_KEY_PATTERN.test(key) || Object.hasOwn(details, key)) return null;
      if (tag === 'x') details[key] = value;
      else if (tag === 'n') {
        if (!JSON_NUMBER.test(value)) return null;
        const n = Number(value);
        if (!Number.isFinite(n) || JSON.stringify(n) !== value) return null;
        details[key] = n;
      } else if (tag === 'j') {
        const parsed = parseJson(value);
        if (parsed === undefined || typeof parsed === 'string' || typeof parsed === 'number') return null;
        details[key] = parsed;
      } else return null;
      continue;
    }
    if (name === 'e') {
      if (value !== '{}' || details !== undefined) return null;
      details = {};
      continue;
    }
    const field = COMPACT_NAMES[name];
    if (field === undefined) return null;
    if (name === 't') {
      if (!INTEGER.test(value)) return null;
      object.time = Number(value);
    } else if (name === 'p') {
      const parsed = parseJson(value);
      if (parsed === undefined) return null;
      object.policies = parsed;
    } else if (name === 'l') {
      if (!BASE64URL_32.test(value)) return null;
      const bytes = Buffer.from(value, 'base64url');
      // one encoding per value: 32 bytes that encode back to exactly the stored text
      if (bytes.length !== 32 || bytes.toString('base64url') !== value) return null;
      object.prev = bytes.toString('hex');
    } else object[field] = value;
  }
  if (flat[flat.length - 2] !== 'l') return null;
  if (details !== undefined) object.details = details;
  object.seq = position;
  object.hash = '0'.repeat(64); // placeholder for the schema; replaced by the computed hash below
  const record = parseAuditRecord(object);
  if (record === null) return null;
  record.hash = recordHash(record);
  return record;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const INTEGER_FIELDS = new Set(['seq', 'time']);
const JSON_FIELDS = new Set(['policies', 'details']);

/** A record in the first format (every field stored, its hash included), or null when malformed. */
function fromFirstFormat(flat: string[]): AuditRecord | null {
  const object: Record<string, unknown> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!;
    const value = flat[i + 1]!;
    if (Object.hasOwn(object, name)) return null;
    if (INTEGER_FIELDS.has(name)) {
      if (!INTEGER.test(value)) return null;
      object[name] = Number(value);
    } else if (JSON_FIELDS.has(name)) {
      const parsed = parseJson(value);
      if (parsed === undefined) return null;
      object[name] = parsed;
    } else object[name] = value;
  }
  return parseAuditRecord(object);
}

/** The record a stream entry `<seq>-0` holds (either format; a compact record's hash computed), or null. */
export function decodeAuditEntry(id: string, fields: string[]): AuditRecord | null {
  if (!/^\d+-0$/.test(id)) return null;
  return fromFields(idPosition(id), fields)?.record ?? null;
}

/** The seq part of an entry id `<seq>-<n>`. */
function idPosition(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}
