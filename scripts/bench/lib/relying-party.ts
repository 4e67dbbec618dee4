// A relying party in the benchmark's own process: the verify SDK following the broker's revocation feed, with
// a hook that timestamps the feed's events per task (for scenario 4).
import { performance } from 'node:perf_hooks';
import { createVerifier, type RevocationEvent, type Verifier } from '../../../src/verify/index.ts';
import type { BrokerProcess } from './broker.ts';
import { AUDIENCE } from './workload.ts';

export interface TaskWatch {
  /** performance.now() when the task's own event arrived. */
  taskEventAt: number | null;
  /** Credential events seen for the task, and when the last one arrived. */
  credentialEvents: number;
  lastCredentialEventAt: number | null;
  /** Resolves once the task event has arrived. */
  taskEvent: Promise<void>;
  /** Resolves once `n` credential events have arrived. */
  credentials(n: number): Promise<void>;
}

export interface RelyingParty {
  verifier: Verifier;
  watch(task: string): TaskWatch;
  unwatch(task: string): void;
  close(): void;
}

export async function startRelyingParty(broker: BrokerProcess): Promise<RelyingParty> {
  const watches = new Map<
    string,
    TaskWatch & { resolveTask: () => void; waiters: Array<{ n: number; resolve: () => void }> }
  >();
  const onRevocation = (event: RevocationEvent) => {
    const w = watches.get(event.task);
    if (!w) return;
    const now = performance.now();
    if (event.kind === 'task') {
      w.taskEventAt ??= now;
      w.resolveTask();
    } else {
      w.credentialEvents += 1;
      w.lastCredentialEventAt = now;
      for (const waiter of w.waiters.filter((x) => w.credentialEvents >= x.n)) waiter.resolve();
      w.waiters = w.waiters.filter((x) => w.credentialEvents < x.n);
    }
  };
  const verifier = createVerifier({
    issuer: broker.issuer,
    audience: AUDIENCE,
    trustDomain: 'writ.local',
    startTimeoutMs: 60_000,
    onRevocation,
  });
  await verifier.start();
  return {
    verifier,
    watch(task) {
      let resolveTask!: () => void;
      const taskEvent = new Promise<void>((r) => {
        resolveTask = r;
      });
      const w = {
        taskEventAt: null as number | null,
        credentialEvents: 0,
        lastCredentialEventAt: null as number | null,
        taskEvent,
        resolveTask,
        waiters: [] as Array<{ n: number; resolve: () => void }>,
        credentials(n: number) {
          if (w.credentialEvents >= n) return Promise.resolve();
          return new Promise<void>((resolve) => w.waiters.push({ n, resolve }));
        },
      };
      watches.set(task, w);
      return w;
    },
    unwatch(task) {
      watches.delete(task);
    },
    close() {
      verifier.close();
    },
  };
}
