// `--perf`: Linux perf samples the broker process (every thread: the event loop, libuv's threadpool where
// signatures run, V8's GC helpers) during its own load runs, and the samples are charged to categories (OpenSSL
// math, OpenSSL parsing, V8 GC, kernel scheduling, JS by package...) as CPU microseconds per request. V8's
// --cpu-prof (`--profile`) sees only the main thread, and on a loaded 2-core box it samples wall time: a thread
// waiting for a core is charged to whatever it was running.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageOf } from './profile.ts';

/** Samples per second per thread. */
const FREQUENCY = 999;

export interface PerfCategory {
  name: string;
  /** CPU µs per successful request on the event loop's thread, on the other threads, and both. */
  mainUs: number;
  otherUs: number;
  totalUs: number;
  percent: number;
}

export interface PerfSummary {
  target: string;
  files: string[];
  samples: number;
  requests: number;
  cpuUsPerRequest: number;
  categories: PerfCategory[];
  /** The heaviest symbols, µs per request (all threads). */
  symbols: { name: string; us: number }[];
}

export function perfAvailable(): string | null {
  const r = spawnSync('perf', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'perf is not on PATH (Debian: apt-get install linux-perf)';
  return null;
}

/** Records the runs of named targets; one perf.data file per run. */
export class PerfRecorder {
  readonly #dir: string;
  readonly #runs = new Map<string, { files: string[]; requests: number; pid: number }>();
  #n = 0;

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** Runs `load` with perf recording `pid` (all its threads); `load` returns how many requests succeeded. */
  async around<T extends { ok: number }>(target: string, pid: number, load: () => Promise<T>): Promise<T> {
    const file = path.join(this.#dir, `perf-${target}-${this.#n++}.data`);
    const perf: ChildProcess = spawn(
      'perf',
      ['record', '-q', '-F', String(FREQUENCY), '-p', String(pid), '-o', file],
      { stdio: 'ignore' },
    );
    const exited = new Promise<void>((resolve) => perf.once('exit', () => resolve()));
    await new Promise((r) => setTimeout(r, 300)); // perf attaches to every thread before the load starts
    try {
      const result = await load();
      const run = this.#runs.get(target) ?? { files: [], requests: 0, pid };
      run.files.push(file);
      run.requests += result.ok;
      this.#runs.set(target, run);
      return result;
    } finally {
      perf.kill('SIGINT');
      await exited;
    }
  }

  targets(): string[] {
    return [...this.#runs.keys()];
  }

  summarize(target: string, top = 15): PerfSummary | null {
    const run = this.#runs.get(target);
    if (!run || run.requests === 0) return null;
    const bySymbol = new Map<string, { main: number; other: number; category: string }>();
    let samples = 0;
    for (const file of run.files) {
      const out = execFileSync(
        'perf',
        [
          'report',
          '-i',
          file,
          '--no-children',
          '--sort',
          'pid,dso,sym',
          '-g',
          'none',
          '--stdio',
          '-F',
          'sample,pid,dso,sym',
          '--field-separator=|',
        ],
        { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] },
      );
      for (const line of out.split('\n')) {
        if (line.startsWith('#') || !line.trim()) continue;
        const [count, thread, dso, sym] = line.split('|').map((s) => s.trim());
        const n = Number(count);
        if (!Number.isFinite(n) || thread === undefined || dso === undefined || sym === undefined) continue;
        const name = sym.replace(/^\[[.k]\] /, '');
        const main = thread.startsWith(`${run.pid}:`);
        const entry = bySymbol.get(name) ?? { main: 0, other: 0, category: categoryOf(name, dso) };
        if (main) entry.main += n;
        else entry.other += n;
        bySymbol.set(name, entry);
        samples += n;
      }
    }
    const usPerSample = 1e6 / FREQUENCY / run.requests;
    const categories = new Map<string, { main: number; other: number }>();
    for (const e of bySymbol.values()) {
      const c = categories.get(e.category) ?? { main: 0, other: 0 };
      c.main += e.main;
      c.other += e.other;
      categories.set(e.category, c);
    }
    return {
      target,
      files: run.files,
      samples,
      requests: run.requests,
      cpuUsPerRequest: samples * usPerSample,
      categories: [...categories]
        .map(([name, c]) => ({
          name,
          mainUs: c.main * usPerSample,
          otherUs: c.other * usPerSample,
          totalUs: (c.main + c.other) * usPerSample,
          percent: ((c.main + c.other) / samples) * 100,
        }))
        .sort((a, b) => b.totalUs - a.totalUs),
      symbols: [...bySymbol]
        .map(([name, e]) => ({ name: name.slice(0, 100), us: (e.main + e.other) * usPerSample }))
        .sort((a, b) => b.us - a.us)
        .slice(0, top),
    };
  }
}

/** What part of the process a sampled symbol belongs to. */
export function categoryOf(sym: string, dso: string): string {
  if (sym.startsWith('JS:')) {
    // --perf-basic-prof names: `JS:*name url:line:column` (`*` optimised, `~` interpreted).
    const url = /\s(\S+):\d+:\d+$/.exec(sym)?.[1] ?? '';
    return `JS: ${url.startsWith('node:') ? 'node core' : packageOf(url.replace(/^file:\/\//, ''))}`;
  }
  if (dso.includes('kernel')) {
    return /futex|schedul|switch|wake|spin_unlock_irq|idle|tick/.test(sym)
      ? 'kernel: thread wake-ups and switches'
      : 'kernel: syscalls, network, memory';
  }
  if (/^(__)?(ecp_|ec_|EC_|ECDSA|ossl_ec|BN_|bn_|sha256|SHA256|sha512|ossl_sha|KECCAK)/.test(sym)) {
    return 'OpenSSL: EC, bignum and hash math';
  }
  if (
    /^(OSSL_|ossl_|OPENSSL_|ASN1|asn1|X509|x509|EVP_|evp_|CRYPTO_|d2i_|i2d_|PEM_|OBJ_|ERR_|c2i_|do_name)/.test(
      sym,
    )
  ) {
    return 'OpenSSL: parsing, decoders, lookups';
  }
  if (
    /^(v8::internal::)?.*(Mark|Scaveng|Sweep|Evacuat|Compact|RememberedSet|MemoryChunk|GarbageColl|Worklist|ActiveSystemPages)/.test(
      sym,
    ) ||
    sym.startsWith('heap::base') ||
    sym.startsWith('cppgc')
  ) {
    return 'V8: garbage collection';
  }
  if (/compiler::|Maglev|maglev|Baseline|CompileLazy|Parser|AstValue|Scanner/.test(sym))
    return 'V8: compilers';
  if (sym.startsWith('Builtins_')) return 'V8: builtins';
  if (sym.includes('v8::')) return 'V8: runtime';
  if (/^(uv_|uv__)/.test(sym)) return 'libuv';
  if (sym.includes('node::')) return 'node (C++)';
  if (dso.includes('libc') || /malloc|free|memmove|memcpy|memset|pthread_/.test(sym)) {
    return /pthread_|futex|lll_/.test(sym) ? 'libc: locks' : 'libc: malloc and memory';
  }
  if (dso.includes('JIT')) return 'JS: unnamed JIT code';
  return 'other';
}
