// Drives load runs through the separate runner process (scripts/bench/runner.ts --serve): one JSON options line
// in, one JSON result line out, so a run costs no process start. The runner is started once and reused.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import type { RunnerOptions, RunnerResult } from '../runner.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
let seq = 0;

interface Runner {
  proc: ChildProcessWithoutNullStreams;
  lines: Interface;
  next(): Promise<string>;
  stderr(): string;
}

let runner: Promise<Runner> | undefined;
let queue: Promise<unknown> = Promise.resolve();

function startRunner(): Promise<Runner> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'scripts/bench/runner.ts'), '--serve'],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  proc.once('exit', () => process.off('exit', killOnExit));
  const lines = createInterface({ input: proc.stdout });
  const pending: string[] = [];
  const waiters: Array<{ resolve: (l: string) => void; reject: (e: Error) => void }> = [];
  lines.on('line', (line) => {
    if (!line.startsWith('{')) return;
    const w = waiters.shift();
    if (w) w.resolve(line);
    else pending.push(line);
  });
  proc.once('exit', (code, signal) => {
    const e = new Error(`load runner exited (${code ?? signal}):\n${stderr}`);
    for (const w of waiters.splice(0)) w.reject(e);
  });
  const r: Runner = {
    proc,
    lines,
    stderr: () => stderr,
    next: () => {
      const line = pending.shift();
      if (line !== undefined) return Promise.resolve(line);
      if (proc.exitCode !== null || proc.signalCode !== null) {
        return Promise.reject(new Error(`load runner is gone:\n${stderr}`));
      }
      return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
    },
  };
  return r.next().then((line) => {
    if (!(JSON.parse(line) as { ready?: boolean }).ready) throw new Error(`load runner: ${line}`);
    return r;
  });
}

/** One load run; runs are serialised (the runner does one at a time). */
export function runLoad(_tmpDir: string, options: RunnerOptions): Promise<RunnerResult> {
  const job = queue.then(async () => {
    runner ??= startRunner();
    const r = await runner;
    r.proc.stdin.write(`${JSON.stringify(options)}\n`);
    const reply = JSON.parse(await r.next()) as { result?: RunnerResult; error?: string };
    if (!reply.result) throw new Error(`load runner: ${reply.error ?? 'no result'}`);
    return reply.result;
  });
  queue = job.catch(() => undefined);
  return job;
}

/** Ends the runner process (its stdin closes, it finishes and exits). */
export async function stopRunner(): Promise<void> {
  const r = await runner?.catch(() => undefined);
  runner = undefined;
  if (!r) return;
  const exited = new Promise<void>((resolve) => r.proc.once('exit', () => resolve()));
  r.proc.stdin.end();
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Writes request bodies for the runner's `bodiesFile`. */
export function writeBodies(tmpDir: string, name: string, bodies: string[]): string {
  const file = path.join(tmpDir, `${name}-${process.pid}-${++seq}.json`);
  writeFileSync(file, JSON.stringify(bodies));
  return file;
}
