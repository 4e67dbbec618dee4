// The warning for credentials issued on legacy evidence (static shared secrets), per workload.
import type { Logger } from 'pino';

/** What the warning names of a credential (never the evidence). */
export interface LegacyCredential {
  id: string;
  spiffeId: string;
  task: string;
  expiresAt: number;
}

interface Window {
  attestor: string;
  spiffeId: string;
  /** Epoch ms the counting started (the full line, or the previous summary). */
  since: number;
  /** Credentials issued since `since` and not logged yet. */
  count: number;
  last: LegacyCredential;
}

export interface LegacyLogOptions {
  /** How long a workload's legacy credentials are counted before one line sums them up. */
  intervalMs?: number;
  /** Workloads counted at once; a workload beyond it gets a full line per credential (never silence). */
  maxWorkloads?: number;
  now?: () => number;
}

const FULL_MESSAGE = 'legacy credential issued: the workload still attests with a static secret';
const SUMMARY_MESSAGE = 'legacy credentials issued: the workload still attests with a static secret';

/**
 * Keeps workloads that still attest with static secrets visible in the log without a line per credential:
 * a workload's first legacy credential is logged in full at once; the ones it gets in the next `intervalMs`
 * are counted and summed up in one line (count, the period, the last credential's id and task). A workload
 * quiet for a whole interval is forgotten, so its next credential is logged in full again. Every credential
 * still has its own audit record (naming its attestor) and its `legacy` mark, and counts in `writ_legacy_issuance_total`.
 *
 * A line per credential, as before, is thousands of lines per second from one busy legacy workload, and the
 * line cost ~5 % of the event loop of an issuance (docs/performance.md).
 */
export class LegacyIssuanceLog {
  readonly #logger: Logger;
  readonly #maxWorkloads: number;
  readonly #now: () => number;
  readonly #windows = new Map<string, Window>();
  readonly #timer: NodeJS.Timeout;
  #closed = false;

  constructor(logger: Logger, opts: LegacyLogOptions = {}) {
    this.#logger = logger;
    this.#maxWorkloads = opts.maxWorkloads ?? 10_000;
    this.#now = opts.now ?? Date.now;
    this.#timer = setInterval(() => this.flush(), opts.intervalMs ?? 60_000);
    this.#timer.unref();
  }

  /** One credential issued on legacy evidence from `attestor`. */
  note(attestor: string, credential: LegacyCredential, reqId: unknown): void {
    const key = `${attestor} ${credential.spiffeId}`;
    const window = this.#windows.get(key);
    if (window !== undefined) {
      window.count++;
      window.last = credential;
      return;
    }
    if (!this.#closed && this.#windows.size < this.#maxWorkloads) {
      this.#windows.set(key, {
        attestor,
        spiffeId: credential.spiffeId,
        since: this.#now(),
        count: 0,
        last: credential,
      });
    }
    this.#logger.warn(
      {
        reqId,
        attestor,
        id: credential.id,
        spiffeId: credential.spiffeId,
        task: credential.task,
        expiresAt: credential.expiresAt,
      },
      FULL_MESSAGE,
    );
  }

  /** Sums up every workload's credentials counted since its last line; forgets the workloads that had none. */
  flush(): void {
    const now = this.#now();
    for (const [key, w] of this.#windows) {
      if (w.count === 0) {
        this.#windows.delete(key);
        continue;
      }
      this.#logger.warn(
        {
          attestor: w.attestor,
          spiffeId: w.spiffeId,
          count: w.count,
          since: new Date(w.since).toISOString(),
          lastId: w.last.id,
          lastTask: w.last.task,
        },
        SUMMARY_MESSAGE,
      );
      w.count = 0;
      w.since = now;
    }
  }

  /** Logs what is still counted and stops the timer; credentials noted after this get a full line each. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.flush();
    this.#windows.clear();
  }
}
