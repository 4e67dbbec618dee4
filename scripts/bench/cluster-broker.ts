// `--workers N` for the benchmark: a node:cluster primary forks N workers, each running the broker's own
// runServer (config -> startBroker) on the same port; the primary hands out connections (round-robin).
// Run: node --import tsx scripts/bench/cluster-broker.ts <workers>, with the broker's usual environment.
import cluster from 'node:cluster';
import { failStart, runServer } from '../../src/main.ts';

const workers = Number(process.argv[2] ?? 2);

if (cluster.isPrimary) {
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    process.stderr.write('usage: cluster-broker.ts <workers 1..64>\n');
    process.exit(2);
  }
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    process.stderr.write(`writ cluster: worker ${worker.process.pid} exited (${code ?? signal}); stopping\n`);
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exitCode = 1;
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(1);
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  runServer().catch(failStart);
}
