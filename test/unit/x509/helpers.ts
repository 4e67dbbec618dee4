// Test helpers for the X.509 module: openssl as an independent judge, temp dirs, and openssl-made keys, CSRs and CAs.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs openssl; never throws for a non-zero exit (tests assert on `code`). */
export function openssl(args: readonly string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      [...args],
      { cwd, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(error);
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/** Runs openssl and fails the test with its stderr when it exits non-zero. */
export async function opensslOk(args: readonly string[], cwd: string): Promise<string> {
  const r = await openssl(args, cwd);
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export interface TempDir {
  dir: string;
  path(name: string): string;
  write(name: string, content: string | Buffer): Promise<string>;
  read(name: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** Fixtures live in a temp dir per suite (test/fixtures/x509 stays empty: no committed keys). */
export async function tempDir(prefix = 'writ-x509-'): Promise<TempDir> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return {
    dir,
    path: (name) => join(dir, name),
    async write(name, content) {
      await writeFile(join(dir, name), content);
      return join(dir, name);
    },
    read: (name) => readFile(join(dir, name), 'utf8'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** `openssl req -newkey` arguments for each key kind the tests use. */
export const NEWKEY: Readonly<Record<string, readonly string[]>> = {
  p256: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  p384: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
  p521: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'],
  p224: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-224'],
  secp256k1: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
  rsa1024: ['-newkey', 'rsa:1024'],
  rsa2048: ['-newkey', 'rsa:2048'],
  rsa3072: ['-newkey', 'rsa:3072'],
  rsa4096: ['-newkey', 'rsa:4096'],
  ed25519: ['-newkey', 'ed25519'],
  ed448: ['-newkey', 'ed448'],
};

export const CSR_SUBJECT = '/O=Workload Inc/CN=workload-cn';

/** A key and CSR made by openssl; returns the CSR PEM (the key is at `<name>.key`). */
export async function opensslCsr(
  t: TempDir,
  name: string,
  keyArgs: readonly string[],
  extra: readonly string[] = [],
) {
  await opensslOk(
    [
      'req',
      '-new',
      ...keyArgs,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      CSR_SUBJECT,
      ...extra,
    ],
    t.dir,
  );
  return t.read(`${name}.csr`);
}

/** A CSR by openssl for an existing key file. */
export async function opensslCsrForKey(
  t: TempDir,
  name: string,
  keyFile: string,
  extra: readonly string[] = [],
) {
  await opensslOk(
    ['req', '-new', '-key', keyFile, '-out', `${name}.csr`, '-subj', CSR_SUBJECT, ...extra],
    t.dir,
  );
  return t.read(`${name}.csr`);
}

export const CA_CONFIG = `
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
O = Test
[ v3_root ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_int ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = URI:spiffe://example.org
[ v3_int_no_certsign ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

/** A self-signed root made by openssl (`<name>.pem`, `<name>.key`). */
export async function opensslRoot(
  t: TempDir,
  name: string,
  keyArgs: readonly string[],
  days = 30,
): Promise<void> {
  await t.write('ca.cnf', CA_CONFIG);
  await opensslOk(
    [
      'req',
      '-x509',
      '-config',
      'ca.cnf',
      '-extensions',
      'v3_root',
      ...keyArgs,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      String(days),
      '-subj',
      `/O=Test/CN=${name}`,
    ],
    t.dir,
  );
}

/** A certificate for a new key, issued by `issuer` with the extensions section `ext` of CA_CONFIG. */
export async function opensslIssue(
  t: TempDir,
  name: string,
  issuer: string,
  keyArgs: readonly string[],
  ext: string,
  days = 20,
): Promise<void> {
  await t.write('ca.cnf', CA_CONFIG);
  await opensslOk(
    [
      'req',
      '-new',
      '-config',
      'ca.cnf',
      ...keyArgs,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/O=Test/CN=${name}`,
    ],
    t.dir,
  );
  await opensslOk(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${issuer}.pem`,
      '-CAkey',
      `${issuer}.key`,
      '-set_serial',
      `0x4${randomBytes(12).toString('hex')}`,
      '-days',
      String(days),
      '-extfile',
      'ca.cnf',
      '-extensions',
      ext,
      '-out',
      `${name}.pem`,
    ],
    t.dir,
  );
}

/** The lines of `openssl x509 -text` between an extension's header and the next extension. */
export function extensionBlock(
  text: string,
  header: string,
): { critical: boolean; body: string[] } | undefined {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim().startsWith(`${header}:`));
  if (i < 0) return undefined;
  const body: string[] = [];
  for (const line of lines.slice(i + 1)) {
    // Extension headers are indented 12 spaces, their values 16 or more.
    if (/^ {0,12}\S/.test(line)) break;
    body.push(line.trim());
  }
  return { critical: lines[i]!.includes('critical'), body: body.filter((l) => l !== '') };
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
