// `writ revoke`: end a task, revoke one credential, or revoke in bulk by SPIFFE ID, prefix or attestor.
import type { Command } from 'commander';
import { seg, UsageError } from '../client.ts';
import { addConnection, type ConnectionOpts, clientOf, out, printJson } from '../common.ts';

interface RevokeOpts extends ConnectionOpts {
  task?: string;
  id?: string;
  spiffeId?: string;
  spiffeIdPrefix?: string;
  attestor?: string;
  reason?: string;
}

export function revokeCommand(program: Command): void {
  addConnection(
    program
      .command('revoke')
      .description(
        'revoke credentials: name exactly one of --task, --id, --spiffe-id, --spiffe-id-prefix, --attestor',
      )
      .option('--task <task>', 'end a task: every credential of it dies (needs --otp)')
      .option('--id <id>', 'revoke one credential (its jti or serial)')
      .option('--spiffe-id <id>', 'revoke every active credential of a SPIFFE ID (needs --otp)')
      .option('--spiffe-id-prefix <prefix>', 'revoke every active credential under a path (needs --otp)')
      .option('--attestor <name>', 'revoke every active credential an attestor vouched for (needs --otp)')
      .option('--reason <code>', 'a lowercase reason code, e.g. key_compromise (default admin)'),
  ).action(async (opts: RevokeOpts) => {
    const named = (['task', 'id', 'spiffeId', 'spiffeIdPrefix', 'attestor'] as const).filter(
      (k) => opts[k] !== undefined,
    );
    if (named.length !== 1)
      throw new UsageError('name exactly one of --task, --id, --spiffe-id, --spiffe-id-prefix, --attestor');
    const client = clientOf(opts);
    const reason = opts.reason === undefined ? {} : { reason: opts.reason };
    if (opts.task !== undefined) {
      const res = await client.call<{ id: string; status: string; endReason?: string }>(
        'POST',
        `/v1/admin/tasks/${seg(opts.task)}/revoke`,
        { body: reason, privileged: true },
      );
      if (opts.json) printJson(res.body);
      else
        out(`task ${res.body.id}: ${res.body.status}${res.body.endReason ? ` (${res.body.endReason})` : ''}`);
      return;
    }
    if (opts.id !== undefined) {
      const res = await client.call<{ revoked: boolean; credential: { id: string; status: string } }>(
        'POST',
        `/v1/admin/credentials/${seg(opts.id)}/revoke`,
        { body: reason },
      );
      if (opts.json) printJson(res.body);
      else
        out(
          res.body.revoked
            ? `credential ${res.body.credential.id} revoked`
            : `credential ${res.body.credential.id} was not active (${res.body.credential.status})`,
        );
      return;
    }
    const selector =
      opts.spiffeId !== undefined
        ? { spiffeId: opts.spiffeId }
        : opts.spiffeIdPrefix !== undefined
          ? { spiffeIdPrefix: opts.spiffeIdPrefix }
          : { attestor: opts.attestor };
    const res = await client.call<{ revoked: number; tasks: number }>('POST', '/v1/admin/revocations', {
      body: { ...selector, ...reason },
      privileged: true,
    });
    if (opts.json) printJson(res.body);
    else out(`${res.body.revoked} credential(s) revoked`);
  });
}
