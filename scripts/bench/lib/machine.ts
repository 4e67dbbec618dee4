// What the figures were measured on: CPU, cores, memory, Node and Redis versions.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';

export interface Machine {
  cpu: string;
  mhz: number | null;
  cores: number;
  memoryGiB: number;
  node: string;
  redis: string;
  platform: string;
}

export function describeMachine(): Machine {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  let mhz: number | null = null;
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    cpu = /^model name\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? cpu;
    const m = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(info)?.[1];
    mhz = m === undefined ? null : Math.round(Number(m));
  } catch {
    // not Linux
  }
  let redis = 'unknown';
  try {
    redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? redis;
  } catch {
    // reported when the benchmark tries to start it
  }
  return {
    cpu,
    mhz,
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    redis,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
}
