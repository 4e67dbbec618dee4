// `writ svid jwt|x509`: the workload side, attestation evidence for an SVID. No admin token is sent.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { closeSync, openSync, readFileSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { createCsr } from '../../keys/x509/index.ts';
import { UsageError } from '../client.ts';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  collect,
  isoSeconds,
  out,
  positiveInt,
  printFields,
  printJson,
  readJsonArg,
} from '../common.ts';

interface WorkloadOpts extends ConnectionOpts {
  attestor: string;
  evidence: string;
  ttl?: number;
  task?: string;
  spiffeId?: string;
  approval?: string;
}

interface JwtOpts extends WorkloadOpts {
  audience: string[];
}

interface X509Opts extends WorkloadOpts {
  csr?: string;
  generateKey?: string;
  out?: string;
}

interface JwtSvid {
  token: string;
  spiffeId: string;
  id: string;
  task: string;
  expiresAt: number;
}

interface X509Svid {
  certificate: string;
  chain: string[];
  bundle: string;
  spiffeId: string;
  id: string;
  task: string;
  expiresAt: number;
}

function workloadOptions(cmd: Command): Command {
  cmd
    .requiredOption('--attestor <name>', 'the attestor that checks the evidence (e.g. join_token)')
    .requiredOption('--evidence <json>', "the attestor's evidence: JSON, @file or @- (stdin)")
    .option('--ttl <seconds>', 'requested lifetime', positiveInt)
    .option('--task <task>', 'the task the credential belongs to')
    .option('--spiffe-id <id>', 'choose among several SPIFFE IDs the workload matches')
    .option('--approval <id>', 'repeat a request an admin approved (apr_...)');
  return addConnection(cmd, { admin: false });
}

function commonBody(opts: WorkloadOpts): Record<string, unknown> {
  return {
    attestor: opts.attestor,
    evidence: readJsonArg(opts.evidence, '--evidence'),
    ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }),
    ...(opts.task === undefined ? {} : { task: opts.task }),
    ...(opts.spiffeId === undefined ? {} : { spiffeId: opts.spiffeId }),
    ...(opts.approval === undefined ? {} : { approval: opts.approval }),
  };
}

/** Writes a new file only (never over an existing one), readable by its owner alone. */
function writePrivateFile(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'EEXIST' ? `${path} exists; not overwriting a key` : `cannot write ${path}: ${code}`,
    );
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export function svidCommands(program: Command): void {
  const svid = program
    .command('svid')
    .description('get an SVID as a workload (attestation evidence, no admin token)');

  workloadOptions(
    svid
      .command('jwt')
      .description('exchange evidence for a JWT-SVID (POST /v1/svid/jwt)')
      .requiredOption('--audience <aud>', 'audience of the token; repeat for more', collect),
  ).action(async (opts: JwtOpts) => {
    const res = await clientOf(opts).call<JwtSvid>('POST', '/v1/svid/jwt', {
      body: { ...commonBody(opts), audience: opts.audience },
      admin: false,
    });
    if (opts.json) {
      printJson(res.body);
      return;
    }
    printFields([
      ['spiffe id', res.body.spiffeId],
      ['id', res.body.id],
      ['task', res.body.task],
      ['expires', isoSeconds(res.body.expiresAt)],
      ['token', res.body.token],
    ]);
  });

  workloadOptions(
    svid
      .command('x509')
      .description('exchange evidence and a CSR for an X.509-SVID (POST /v1/svid/x509)')
      .option('--csr <file>', 'a PEM PKCS#10 request for a key you hold')
      .option('--generate-key <file>', 'make a P-256 key here (mode 0600) and a CSR for it')
      .option('--out <file>', 'write the certificate and its chain here (PEM) instead of printing them'),
  ).action(async (opts: X509Opts) => {
    if ((opts.csr === undefined) === (opts.generateKey === undefined))
      throw new UsageError('pass exactly one of --csr FILE or --generate-key OUT.key');
    const base = commonBody(opts);
    let csr: string;
    let keyFile: string | undefined;
    if (opts.csr !== undefined) {
      try {
        csr = readFileSync(opts.csr, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read ${opts.csr}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
    } else {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' }) as { privateKey: KeyObject };
      csr = createCsr(privateKey);
      keyFile = opts.generateKey!;
      // Written first, so a key that cannot be stored never gets a certificate; removed if issuance fails.
      writePrivateFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    }
    let res: { body: X509Svid };
    try {
      res = await clientOf(opts).call<X509Svid>('POST', '/v1/svid/x509', {
        body: { ...base, csr },
        admin: false,
      });
    } catch (e) {
      if (keyFile !== undefined) unlinkSync(keyFile);
      throw e;
    }
    const pem = [res.body.certificate, ...(res.body.chain ?? [])]
      .map((p) => (p.endsWith('\n') ? p : `${p}\n`))
      .join('');
    if (opts.out !== undefined) writeFileSync(opts.out, pem, { mode: 0o644 });
    if (opts.json) {
      printJson(res.body);
      return;
    }
    printFields([
      ['spiffe id', res.body.spiffeId],
      ['serial', res.body.id],
      ['task', res.body.task],
      ['expires', isoSeconds(res.body.expiresAt)],
      ...(keyFile === undefined ? [] : [['key', keyFile] as [string, string]]),
      ...(opts.out === undefined ? [] : [['certificate', opts.out] as [string, string]]),
    ]);
    if (opts.out === undefined) out(pem);
  });
}
