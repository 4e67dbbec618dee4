// `writ admin add|list|disable`: admin accounts (POST/GET /v1/admin/accounts, POST .../{name}/disable).
import type { Command } from 'commander';
import { seg } from '../client.ts';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  isoMillis,
  out,
  printFields,
  printJson,
  printTable,
} from '../common.ts';

interface AdminAccount {
  name: string;
  createdAt: number;
  disabled: boolean;
  disabledAt?: number;
  lockedUntil?: number;
}

interface CreatedAccount {
  name: string;
  token: string;
  otpauthUri: string;
}

export function adminCommands(program: Command): void {
  const admin = program.command('admin').description('admin accounts (each with a token and a TOTP secret)');

  addConnection(
    admin
      .command('add')
      .argument('<name>', 'account name ([a-z][a-z0-9_.-]{1,31})')
      .description('create an admin account; prints its token and TOTP secret once (needs --otp)'),
  ).action(async (name: string, opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<CreatedAccount>('POST', '/v1/admin/accounts', {
      body: { name },
      privileged: true,
    });
    if (opts.json) {
      printJson(res.body);
      return;
    }
    printFields([
      ['account', res.body.name],
      ['token', res.body.token],
      ['otpauth URI', res.body.otpauthUri],
    ]);
    out(
      [
        '',
        'Store both now: they are shown only this once (the broker keeps only a hash of the token).',
        'Put the token in a secret store and the otpauth URI in an authenticator app (e.g. as a QR code);',
        'privileged commands then need a fresh code from it (--otp or WRIT_OTP).',
      ].join('\n'),
    );
  });

  addConnection(admin.command('list').description('list admin accounts')).action(
    async (opts: ConnectionOpts) => {
      const res = await clientOf(opts).call<{ accounts: AdminAccount[] }>('GET', '/v1/admin/accounts');
      if (opts.json) {
        printJson(res.body);
        return;
      }
      printTable(
        ['name', 'created', 'status', 'locked until'],
        res.body.accounts.map((a) => [
          a.name,
          isoMillis(a.createdAt),
          a.disabled ? 'disabled' : 'active',
          isoMillis(a.lockedUntil),
        ]),
      );
    },
  );

  addConnection(
    admin
      .command('disable')
      .argument('<name>', 'account name')
      .description('disable an admin account for good: its token stops working (needs --otp)'),
  ).action(async (name: string, opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<AdminAccount>('POST', `/v1/admin/accounts/${seg(name)}/disable`, {
      privileged: true,
    });
    if (opts.json) printJson(res.body);
    else out(`admin account ${res.body.name} disabled`);
  });
}
