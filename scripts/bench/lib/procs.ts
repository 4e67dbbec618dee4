// Child processes of the benchmark: spawn, wait until ready, read their CPU time from /proc, stop them by pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The last few KB of its stdout and stderr, for error messages. */
  output(): string;
  /** Resolves with the first stdout line that parses as JSON and has `ready: true`. */
  readyLine(timeoutMs: number): Promise<Record<string, unknown>>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  exited(): boolean;
}

export function startChild(
  name: string,
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const proc = spawn(command, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`${name}: could not spawn ${command}`);
  let tail = '';
  let lineBuffer = '';
  const readyWaiters: Array<(line: Record<string, unknown>) => void> = [];
  let readyValue: Record<string, unknown> | undefined;
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-6000);
  };
  proc.stdout?.on('data', (chunk: Buffer) => {
    keep(chunk);
    lineBuffer += chunk.toString();
    let nl = lineBuffer.indexOf('\n');
    while (nl >= 0) {
      const line = lineBuffer.slice(0, nl).trim();
      lineBuffer = lineBuffer.slice(nl + 1);
      nl = lineBuffer.indexOf('\n');
      if (readyValue || !line.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.ready === true) {
          readyValue = parsed;
          for (const w of readyWaiters.splice(0)) w(parsed);
        }
      } catch {
        // not our line
      }
    }
  });
  proc.stderr?.on('data', keep);
  const exitedPromise = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  proc.once('exit', () => process.off('exit', killOnExit));
  const hasExited = () => proc.exitCode !== null || proc.signalCode !== null;
  let stopping: Promise<void> | undefined;

  return {
    name,
    proc,
    pid: proc.pid,
    output: () => tail,
    exited: hasExited,
    readyLine(timeoutMs) {
      if (readyValue) return Promise.resolve(readyValue);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${name}: not ready after ${timeoutMs} ms\n${tail}`)),
          timeoutMs,
        );
        proc.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`${name}: exited (${code ?? signal}) before it was ready\n${tail}`));
        });
        readyWaiters.push((line) => {
          clearTimeout(timer);
          resolve(line);
        });
      });
    },
    stop(graceMs = 15_000) {
      stopping ??= (async () => {
        if (!hasExited()) {
          proc.kill('SIGTERM');
          const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
          await exitedPromise;
          clearTimeout(timer);
        }
        process.off('exit', killOnExit);
      })();
      return stopping;
    },
  };
}

const CLOCK_TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux/x86-64

/** utime + stime of one process, in microseconds (10 ms resolution). Null when /proc cannot tell. */
export function cpuMicros(pid: number): number | null {
  return statCpu(`/proc/${pid}/stat`);
}

/** utime + stime of a process's main thread (its event loop; tid = pid), microseconds. */
export function mainThreadCpuMicros(pid: number): number | null {
  return statCpu(`/proc/${pid}/task/${pid}/stat`);
}

function statCpu(file: string): number | null {
  try {
    const stat = readFileSync(file, 'utf8');
    // The command name (field 2) may hold spaces; the fields after it start past its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
    return ((utime + stime) * 1_000_000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** The pid and every descendant (cluster workers), from /proc/<pid>/task/<tid>/children. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i]!;
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        const children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (children) out.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** CPU time of a process and its descendants, microseconds. */
export function treeCpuMicros(pid: number): number | null {
  let total = 0;
  for (const p of processTree(pid)) {
    const t = cpuMicros(p);
    if (t === null && p === pid) return null;
    total += t ?? 0;
  }
  return total;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
