// `writ approvals get|approve|deny`: issuance a policy holds for an admin's decision (/v1/admin/approvals).
import type { Command } from 'commander';
import { seg } from '../client.ts';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  isoSeconds,
  printFields,
  printJson,
} from '../common.ts';

interface Approval {
  id: string;
  status: string;
  spiffeId: string;
  attestor: string;
  audience: string[];
  credentialType: string;
  policies: string[];
  createdAt: number;
  expiresAt: number;
  decidedBy?: string;
  decidedAt?: number;
}

function show(a: Approval, json: boolean | undefined): void {
  if (json) {
    printJson(a);
    return;
  }
  printFields([
    ['id', a.id],
    ['status', a.status],
    ['spiffe id', a.spiffeId],
    ['attestor', a.attestor],
    ['credential', a.credentialType],
    ['audience', a.audience],
    ['policies', a.policies],
    ['created', isoSeconds(a.createdAt)],
    ['expires', isoSeconds(a.expiresAt)],
    ['decided by', a.decidedBy],
    ['decided', isoSeconds(a.decidedAt)],
  ]);
}

export function approvalCommands(program: Command): void {
  const approvals = program.command('approvals').description("issuance waiting for an admin's approval");

  addConnection(
    approvals.command('get').argument('<id>', 'approval id (apr_...)').description('show an approval'),
  ).action(async (id: string, opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<Approval>('GET', `/v1/admin/approvals/${seg(id)}`);
    show(res.body, opts.json);
  });

  for (const [verb, what] of [
    ['approve', 'let the workload repeat its request and get the credential once'],
    ['deny', 'refuse the request'],
  ] as const) {
    addConnection(
      approvals.command(verb).argument('<id>', 'approval id (apr_...)').description(`${what} (needs --otp)`),
    ).action(async (id: string, opts: ConnectionOpts) => {
      const res = await clientOf(opts).call<Approval>('POST', `/v1/admin/approvals/${seg(id)}/${verb}`, {
        privileged: true,
      });
      show(res.body, opts.json);
    });
  }
}
