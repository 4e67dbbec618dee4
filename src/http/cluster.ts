// The broker processes of `writ server --workers N` and their primary, over the cluster's IPC channel:
// - `/metrics`: whichever broker process a scrape reaches answers with the sum over all of them, gathered by
//   the primary (prom-client's AggregatorRegistry);
// - policy reloads: a reload one process made is repeated by the others (the primary passes it on).
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';

interface MetricsRequest {
  writ: 'metrics?';
  id: number;
}
interface MetricsReply {
  writ: 'metrics';
  id: number;
  text?: string;
  error?: string;
}

const TIMEOUT_MS = 5_000;
let asPrimary: (() => Promise<string>) | undefined;
let inCluster = false;

/** After this process reloaded its policies: ask the primary to have every other broker process reload. */
export function announcePolicyReload(): void {
  if (inCluster) process.send?.({ writ: 'policy-reloaded' });
}

/** In a broker process: reload when another process of the group did (`reload` logs its own outcome). */
export function followPolicyReloads(reload: () => Promise<void>): void {
  process.on('message', (m: unknown) => {
    if ((m as { writ?: unknown })?.writ === 'policy-reload') void reload();
  });
}

/** In a broker process the primary forked: answer the primary's collections with `registry`. */
export function serveClusterMetrics(registry: Registry): void {
  inCluster = true;
  AggregatorRegistry.setRegistries([registry]);
  new AggregatorRegistry(); // installs the listener that answers the primary
  let next = 0;
  const pending = new Map<number, (reply: MetricsReply) => void>();
  process.on('message', (m: unknown) => {
    const reply = m as Partial<MetricsReply>;
    if (reply?.writ !== 'metrics' || typeof reply.id !== 'number') return;
    pending.get(reply.id)?.(reply as MetricsReply);
  });
  asPrimary = () =>
    new Promise<string>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('no metrics from the cluster primary in time'));
      }, TIMEOUT_MS);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        pending.delete(id);
        if (typeof reply.text === 'string') resolve(reply.text);
        else reject(new Error(reply.error ?? 'the cluster primary sent no metrics'));
      });
      process.send?.({ writ: 'metrics?', id } satisfies MetricsRequest);
    });
}

/** The cluster-wide metrics text, or undefined in a process that is not one of a cluster's brokers. */
export function clusterMetrics(): Promise<string> | undefined {
  return asPrimary?.();
}

/** In the cluster primary: gathers every broker process's metrics when one asks; passes policy reloads on. */
export function clusterMetricsPrimary(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, m: unknown) => {
    if ((m as { writ?: unknown })?.writ === 'policy-reloaded') {
      for (const other of Object.values(cluster.workers ?? {})) {
        if (other && other !== worker && other.isConnected()) other.send({ writ: 'policy-reload' });
      }
      return;
    }
    const request = m as Partial<MetricsRequest>;
    if (request?.writ !== 'metrics?' || typeof request.id !== 'number') return;
    const id = request.id;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ writ: 'metrics', id, text } satisfies MetricsReply),
      (e: unknown) =>
        worker.send({
          writ: 'metrics',
          id,
          error: e instanceof Error ? e.message : String(e),
        } satisfies MetricsReply),
    );
  });
}
