// A CA's signing and mint check on a worker thread: the signature of each X.509-SVID, and OpenSSL's re-parse of
// the certificate, its signature and its fields, off the event loop. Fails closed: no answer, a late or
// unexpected one, or a dead thread is a failure.
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { CaError } from './errors.ts';
import { MINT_CHECK_FAILURES, type MintCheckFailure } from './mint-check.mjs';

export interface MintCheckerOptions {
  /** The CA's certificate (DER) and public key: what every certificate checked must have been issued by. */
  issuerDer: Buffer;
  issuerKey: KeyObject;
  /** The CA's private key, its signature's hash and AlgorithmIdentifier (DER). */
  privateKey: KeyObject;
  hash: string;
  algorithm: Buffer;
  /** The CA's own assembly of a certificate (its template): a pass must be for exactly these bytes. */
  assemble(tbs: Buffer, signature: Buffer): Buffer;
  /** The CA's own end, epoch seconds. */
  caNotAfter: number;
  eku: readonly string[];
  /** How long a check may take before the thread is taken for hung (default 5 s). */
  timeoutMs?: number | undefined;
  /** The thread ends after this long without a check, and starts again at the next (default 60 s). */
  idleMs?: number | undefined;
  /** The worker's module (default mint-check.worker.mjs); tests give a misbehaving one. */
  workerUrl?: URL | undefined;
}

export interface MintCheckRequest {
  /** The TBSCertificate to sign. */
  tbs: Buffer;
  /** Lowercase hex. */
  serialHex: string;
  notBefore: number;
  notAfter: number;
  /** The key the request was verified with: the certificate's key, as OpenSSL reads it, must equal it. */
  key: KeyObject;
  /** The certificate's whole subjectAltName, as node:crypto renders it. */
  san: string;
}

/** The certificate signed and checked, or the first check it failed. */
export type MintCheckResult =
  | { failed: null; der: Buffer; signature: Buffer }
  | { failed: MintCheckFailure; der?: undefined; signature?: undefined };

interface Pending {
  tbs: Buffer;
  serialHex: string;
  /** performance.now() when posted. */
  at: number;
  resolve(result: MintCheckResult): void;
  reject(error: CaError): void;
}

/** One worker thread and the checks it owes. */
interface Session {
  worker: Worker;
  pending: Map<number, Pending>;
  /** performance.now() of the last answer or post. */
  used: number;
  timer: NodeJS.Timeout | undefined;
  /** Failed (or closed): it answers nothing more. */
  ended: boolean;
}

const WORKER_URL = new URL('./mint-check.worker.mjs', import.meta.url);
const FAILURES: ReadonlySet<unknown> = new Set(MINT_CHECK_FAILURES);

function unchecked(why: string, cause?: unknown): CaError {
  return new CaError(
    'ERR_CA_MINT_CHECK',
    `the minted certificate could not be checked: ${why}`,
    cause === undefined ? undefined : { cause },
  );
}

export class MintChecker {
  readonly #opts: MintCheckerOptions;
  readonly #timeoutMs: number;
  readonly #idleMs: number;
  #session: Session | undefined;
  #nextId = 0;
  #closed = false;

  constructor(opts: MintCheckerOptions) {
    this.#opts = opts;
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#idleMs = opts.idleMs ?? 60_000;
  }

  /**
   * Signs `tbs` and checks the certificate: resolves with it when it passed every check, else with the first
   * check it failed; rejects with ERR_CA_MINT_CHECK when no trustworthy answer came (the thread is then
   * replaced).
   */
  check(req: MintCheckRequest): Promise<MintCheckResult> {
    if (this.#closed) return Promise.reject(unchecked('the ca is closed'));
    const session = this.#session ?? this.#start();
    const id = this.#nextId++;
    // The thread gets its own copy of the bytes (a pooled Buffer would clone the whole pool), moved, not copied.
    const tbs = new Uint8Array(req.tbs);
    return new Promise((resolve, reject) => {
      const now = performance.now();
      try {
        session.worker.postMessage({ ...req, id, tbs }, [tbs.buffer]);
      } catch (e) {
        reject(unchecked('the check thread refused the request', e));
        return;
      }
      // While a check is owed, the thread keeps the process alive; idle, it does not.
      if (session.pending.size === 0) session.worker.ref();
      session.pending.set(id, { tbs: req.tbs, serialHex: req.serialHex, at: now, resolve, reject });
      session.used = now;
    });
  }

  /** Ends the thread; checks still owed fail. Later checks are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session;
    if (session) await this.#fail(session, unchecked('the ca is closed'));
  }

  #start(): Session {
    const { issuerDer, issuerKey, privateKey, hash, algorithm, caNotAfter, eku } = this.#opts;
    const worker = new Worker(this.#opts.workerUrl ?? WORKER_URL, {
      workerData: { issuerDer, issuerKey, privateKey, hash, algorithm, caNotAfter, eku },
      // The thread needs node:crypto only: not the TypeScript loader the broker or its tests may run under.
      execArgv: [],
    });
    worker.unref();
    const session: Session = {
      worker,
      pending: new Map(),
      used: performance.now(),
      timer: undefined,
      ended: false,
    };
    worker.on('message', (answer: unknown) => this.#answer(session, answer));
    worker.on('messageerror', (e) => void this.#fail(session, unchecked('unreadable answer', e)));
    worker.on('error', (e) => void this.#fail(session, unchecked('the check thread failed', e)));
    worker.on('exit', () => void this.#fail(session, unchecked('the check thread ended')));
    this.#session = session;
    this.#watch(session, this.#timeoutMs);
    return session;
  }

  #answer(session: Session, answer: unknown): void {
    const { id, failed, serial, der, signature } = (answer ?? {}) as Record<string, unknown>;
    const pending = typeof id === 'number' ? session.pending.get(id) : undefined;
    // An answer to nothing owed, a verdict not on the list, or a pass for another certificate than the one the
    // CA's template makes of this request's TBS and the signature: the thread cannot be trusted with the checks
    // it still owes.
    const trusted =
      pending !== undefined &&
      (failed === null
        ? serial === pending.serialHex &&
          der instanceof Uint8Array &&
          signature instanceof Uint8Array &&
          this.#opts.assemble(pending.tbs, bufferOf(signature)).equals(der)
        : FAILURES.has(failed) || failed === 'error');
    if (!trusted) {
      void this.#fail(session, unchecked('unexpected answer from the check thread'));
      return;
    }
    session.pending.delete(id as number);
    session.used = performance.now();
    if (session.pending.size === 0) session.worker.unref();
    if (failed === 'error') pending.reject(unchecked('the check thread could not read it'));
    else if (failed !== null) pending.resolve({ failed: failed as MintCheckFailure });
    else
      pending.resolve({
        failed,
        der: bufferOf(der as Uint8Array),
        signature: bufferOf(signature as Uint8Array),
      });
  }

  /**
   * One timer per thread: a check owed for longer than the timeout fails the thread; a thread idle for
   * idleMs ends. The timer never keeps the process alive (the thread does, while checks are owed).
   */
  #watch(session: Session, delay: number): void {
    session.timer = setTimeout(
      () => {
        const now = performance.now();
        const oldest = session.pending.values().next().value;
        if (oldest !== undefined) {
          if (now - oldest.at >= this.#timeoutMs) {
            void this.#fail(session, unchecked('the check thread did not answer in time'));
          } else this.#watch(session, oldest.at + this.#timeoutMs - now);
        } else if (now - session.used >= this.#idleMs) {
          void this.#fail(session, unchecked('idle'));
        } else this.#watch(session, Math.min(this.#timeoutMs, session.used + this.#idleMs - now));
      },
      Math.max(1, delay),
    );
    session.timer.unref();
  }

  /** Fails every check the thread owes and ends it; the next check starts a new one. */
  async #fail(session: Session, error: CaError): Promise<void> {
    if (session.ended) return;
    session.ended = true;
    if (this.#session === session) this.#session = undefined;
    clearTimeout(session.timer);
    const owed = [...session.pending.values()];
    session.pending.clear();
    for (const p of owed) p.reject(error);
    await session.worker.terminate();
  }
}

/** A Buffer over the bytes a thread sent (no copy). */
function bufferOf(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
