// `writ server` and `writ worker`: run the broker or the lifecycle worker in this process.
import type { Command } from 'commander';

export function serverCommands(program: Command): void {
  program
    .command('server')
    .description('run the broker (dev mode without REDIS_URL)')
    .option('--no-worker', 'do not run the lifecycle worker in this process (or group of processes)')
    .option(
      '--workers <n>',
      'serve from n broker processes on one port (node:cluster; production mode only); the lifecycle ' +
        'worker runs once, in the primary',
    )
    .action(async (opts: { worker: boolean; workers?: string }) => {
      // Imported here: the client commands should not load the whole broker.
      const { failStart, MAX_WORKERS, parseWorkers, runServer } = await import('../../main.ts');
      let workers: number | undefined;
      if (opts.workers !== undefined) {
        workers = parseWorkers(opts.workers);
        if (workers === undefined) {
          process.stderr.write(`writ: --workers must be a whole number from 1 to ${MAX_WORKERS}\n`);
          process.exit(2);
        }
      }
      await runServer({ worker: opts.worker, ...(workers === undefined ? {} : { workers }) }).catch(
        failStart,
      );
    });
  program
    .command('worker')
    .description('run the lifecycle worker alone (production mode: needs REDIS_URL)')
    .action(async () => {
      try {
        const { runWorker } = await import('../../worker.ts');
        const close = await runWorker();
        const stop = () => {
          close().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      } catch (e) {
        process.stderr.write(`writ worker: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      }
    });
}
