// `writ server` and `writ worker`: run the broker or the lifecycle worker in this process.
import type { Command } from 'commander';

export function serverCommands(program: Command): void {
  program
    .command('server')
    .description('run the broker (dev mode without REDIS_URL)')
    .option('--no-worker', 'do not run the lifecycle worker in this process')
    .action(async (opts: { worker: boolean }) => {
      // Imported here: the client commands should not load the whole broker.
      const { failStart, runServer } = await import('../../main.ts');
      await runServer({ worker: opts.worker }).catch(failStart);
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
