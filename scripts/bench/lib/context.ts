// What every scenario gets: the run's settings, the private Redis, the broker under test and the workload.
import type { BrokerProcess } from './broker.ts';
import type { HttpClient } from './http.ts';
import type { PerfRecorder } from './perf.ts';
import type { Workload } from './workload.ts';

export interface BenchSettings {
  quick: boolean;
  /** Interleaved rounds per figure. */
  rounds: number;
  /** Seconds per load run. */
  durationSec: number;
}

export interface BenchContext extends BenchSettings {
  tmpDir: string;
  adminToken: string;
  redisUrl: string;
  /** The YAML the broker runs with (scenario 7 starts a cluster with the same). */
  brokerConfigYaml: string;
  broker: BrokerProcess;
  /** CPU time of the private redis-server, microseconds (null when /proc cannot tell). */
  redisCpuMicros(): number | null;
  /** Keep-alive client to the broker (admin calls, single issuances, introspection). */
  http: HttpClient;
  workload: Workload;
  /** `--perf`: records the broker's measured runs of the targets that name it (LoadTarget.perf). */
  perf: PerfRecorder | null;
  /** Progress, on stderr. */
  log(message: string): void;
  /** A reason a figure is missing or approximate: printed above the result line, kept in the JSON. */
  note(message: string): void;
}

/** Why a scenario produced no figure. */
export class Skipped extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'Skipped';
  }
}
