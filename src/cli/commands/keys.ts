// `writ keys list` and `writ keys rotate` (GET /v1/admin/keys, POST /v1/admin/keys/rotate).
import type { Command } from 'commander';
import { addConnection, type ConnectionOpts, clientOf, out, printJson, printTable } from '../common.ts';

interface Slot {
  state: string;
  createdAt: string | null;
  activatedAt: string | null;
  retainUntil: string | null;
}

interface KeysStatus {
  bundleSequence: number;
  jwt: { rotatable: boolean; keys: Array<Slot & { kid: string; alg: string }> };
  x509: { rotatable: boolean; authorities: Array<Slot & { keyId: string; notAfter: string | null }> };
}

function printStatus(s: KeysStatus): void {
  out(`bundle sequence ${s.bundleSequence}`);
  out(`JWT signing keys${s.jwt.rotatable ? '' : ' (from a file: not rotated by Writ)'}:`);
  printTable(
    ['state', 'kid', 'alg', 'since', 'published until'],
    s.jwt.keys.map((k) => [k.state, k.kid, k.alg, k.activatedAt ?? k.createdAt, k.retainUntil]),
  );
  out(`X.509 authorities${s.x509.rotatable ? '' : ' (from files: not rotated by Writ)'}:`);
  printTable(
    ['state', 'key id', 'not after', 'since', 'published until'],
    s.x509.authorities.map((a) => [
      a.state,
      a.keyId,
      a.notAfter,
      a.activatedAt ?? a.createdAt,
      a.retainUntil,
    ]),
  );
}

export function keysCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('JWT signing keys and X.509 authorities, and their rotation');

  addConnection(
    keys.command('list').description('what signs now, what signs next, what is still published'),
  ).action(async (opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<KeysStatus>('GET', '/v1/admin/keys');
    if (opts.json) printJson(res.body);
    else printStatus(res.body);
  });

  addConnection(
    keys
      .command('rotate')
      .argument('<ring>', 'jwt, x509 or all')
      .option(
        '--compromised',
        'the keys may have leaked: drop every key of the ring from publication at once',
      )
      .description(
        'promote the next keys now; the old ones stay published until what they signed expired (needs --otp)',
      ),
  ).action(async (ring: string, opts: ConnectionOpts & { compromised?: boolean }) => {
    const res = await clientOf(opts).call<KeysStatus>('POST', '/v1/admin/keys/rotate', {
      privileged: true,
      body: opts.compromised ? { ring, compromised: true } : { ring },
    });
    if (opts.json) printJson(res.body);
    else printStatus(res.body);
  });
}
