// `writ join-token create`: a single-use join token for one SPIFFE ID (POST /v1/admin/join-tokens).
import type { Command } from 'commander';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  isoSeconds,
  positiveInt,
  printFields,
  printJson,
} from '../common.ts';

interface JoinTokenOpts extends ConnectionOpts {
  spiffeId: string;
  ttl?: number;
  task?: string;
}

export function joinTokenCommands(program: Command): void {
  const jt = program.command('join-token').description('single-use join tokens for workloads');
  addConnection(
    jt
      .command('create')
      .description('make a join token bound to one SPIFFE ID; shown once (needs --otp)')
      .requiredOption('--spiffe-id <id>', 'the SPIFFE ID the token attests')
      .option('--ttl <seconds>', 'lifetime of the token (default 10 min)', positiveInt)
      .option('--task <task>', 'bind a platform task (an id with ":")'),
  ).action(async (opts: JoinTokenOpts) => {
    const res = await clientOf(opts).call<{ token: string; expiresAt: number }>(
      'POST',
      '/v1/admin/join-tokens',
      {
        body: {
          spiffeId: opts.spiffeId,
          ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }),
          ...(opts.task === undefined ? {} : { task: opts.task }),
        },
        privileged: true,
      },
    );
    if (opts.json) {
      printJson(res.body);
      return;
    }
    printFields([
      ['token', res.body.token],
      ['spiffe id', opts.spiffeId],
      ['expires', isoSeconds(res.body.expiresAt)],
    ]);
  });
}
