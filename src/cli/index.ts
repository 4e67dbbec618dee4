// The `writ` command line: run the broker or the worker (admin commands arrive with admin accounts).
import { Command } from 'commander';
import { failStart, runServer } from '../main.ts';
import { runWorker } from '../worker.ts';

export function buildCli(): Command {
  const program = new Command('writ').description('Writ: short-lived, task-scoped credentials for machines');
  program
    .command('server')
    .description('run the broker (dev mode without REDIS_URL)')
    .option('--no-worker', 'do not run the lifecycle worker in this process')
    .action(async (opts: { worker: boolean }) => {
      await runServer({ worker: opts.worker }).catch(failStart);
    });
  program
    .command('worker')
    .description('run the lifecycle worker alone (production mode: needs REDIS_URL)')
    .action(async () => {
      try {
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
  return program;
}

await buildCli().parseAsync(process.argv);
