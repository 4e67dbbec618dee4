// In-memory AuditLog for dev mode and tests: the Redis adapter's contract, lost on exit.
//
// append runs to completion without awaiting, so it is atomic on the single JS thread and there is one chain.
// The records live in an array of { position, record } (position: the seq it was appended at, as the id of a
// Redis stream entry); tests may pass the array in to tamper with it. Records are copied in and out, and read
// back through the same schema as Redis records, so an altered record is a broken link, not a crash.
import { WritError } from '../errors.ts';
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
  GENESIS_HASH,
  parseAuditRecord,
  type StoredSlot,
  sealRecord,
  toPage,
  verifyChain,
} from './audit-log.ts';

export interface MemoryAuditLogOptions {
  clock?: Clock;
  /** Keep at most this many records (oldest dropped); unlimited by default. */
  maxLen?: number;
  /** The backing array, in position order; a fresh one by default. Tests pass one to alter it. */
  entries?: StoredAuditEntry[];
}

export interface StoredAuditEntry {
  position: number;
  record: AuditRecord;
}

export class MemoryAuditLog implements AuditLog {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #maxLen: number | undefined;
  readonly #entries: StoredAuditEntry[];
  #head: AuditHead = { seq: 0, hash: GENESIS_HASH };

  constructor(opts: MemoryAuditLogOptions = {}) {
    if (opts.maxLen !== undefined && (!Number.isSafeInteger(opts.maxLen) || opts.maxLen < 1)) {
      throw new TypeError('maxLen must be a positive integer');
    }
    this.#clock = opts.clock ?? systemClock;
    this.#maxLen = opts.maxLen;
    this.#entries = opts.entries ?? [];
  }

  async append(event: AuditEvent): Promise<AuditRecord> {
    const record = sealRecord(checkEvent(event), this.#head, this.#clock());
    this.#entries.push({ position: record.seq, record: structuredClone(record) });
    this.#head = { seq: record.seq, hash: record.hash };
    if (this.#maxLen !== undefined && this.#entries.length > this.#maxLen) {
      this.#entries.splice(0, this.#entries.length - this.#maxLen);
    }
    return record;
  }

  async page(request: AuditPageRequest): Promise<AuditPage> {
    const { after, limit } = checkPageRequest(request);
    const records = this.#slots(after + 1, limit).map((slot) => {
      if ('problem' in slot) {
        throw new WritError('server_error', undefined, {
          cause: new Error('stored audit record is malformed'),
        });
      }
      return slot.record;
    });
    return toPage(records, limit);
  }

  async verify(range?: AuditVerifyRange): Promise<AuditVerifyResult> {
    const source: ChainSource = {
      bounds: async () => {
        const first = this.#entries[0];
        const last = this.#entries.at(-1);
        return first && last ? { oldest: first.position, newest: last.position } : null;
      },
      head: async () => this.head(),
      read: async (from, limit) => this.#slots(from, limit),
    };
    return verifyChain(source, range, this.#maxLen !== undefined);
  }

  async head(): Promise<AuditHead> {
    return { ...this.#head };
  }

  /** Up to `limit` stored records at positions >= `from`; the array is kept in seq order. */
  #slots(from: number, limit: number): StoredSlot[] {
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#entries[mid]!.position < from) lo = mid + 1;
      else hi = mid;
    }
    return this.#entries.slice(lo, lo + limit).map(({ position, record: stored }): StoredSlot => {
      const record = parseAuditRecord(structuredClone(stored));
      return record === null ? { position, problem: 'the record is malformed' } : { position, record };
    });
  }
}
