// Scenario 7: the broker with N worker processes (`writ server --workers N`: src/main.ts, node:cluster) against
// one process, same Redis, same load, interleaved.
import { startBrokerProcess } from '../lib/broker.ts';
import type { BenchContext } from '../lib/context.ts';
import { measureInterleaved, type TargetStats } from '../lib/measure.ts';
import { pairedRatio, type Summary } from '../lib/stats.ts';
import { jwtBody, writJwtTarget } from './issuance.ts';

export interface WorkersResult {
  workers: number;
  connections: number;
  single: TargetStats;
  cluster: TargetStats;
  /** cluster / single, per round. */
  ratio: Summary;
}

export async function runWorkers(ctx: BenchContext, workers = 2, connections = 64): Promise<WorkersResult> {
  const cluster = await startBrokerProcess({
    name: `writ-workers${workers}`,
    redisUrl: ctx.redisUrl,
    adminToken: ctx.adminToken,
    configYaml: ctx.brokerConfigYaml,
    tmpDir: ctx.tmpDir,
    workers,
  });
  if (cluster.source !== ctx.broker.source) {
    ctx.note(
      `workers: the source changed since the single broker started (${ctx.broker.source} -> ${cluster.source}): ` +
        'the two run different code, so their ratio compares builds as well as process counts',
    );
  }
  try {
    const body = await jwtBody(ctx);
    const name = `writ-workers${workers}`;
    const stats = await measureInterleaved(
      ctx,
      [writJwtTarget(ctx, body, 'writ'), writJwtTarget(ctx, body, name, cluster)],
      connections,
      { label: `workers=${workers}` },
    );
    const single = stats.writ!;
    const multi = stats[name]!;
    return {
      workers,
      connections,
      single,
      cluster: multi,
      ratio: pairedRatio(multi.okPerSec.runs, single.okPerSec.runs),
    };
  } finally {
    await cluster.stop();
  }
}
