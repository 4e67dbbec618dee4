// Test PKI for x509pop: keys made with node:crypto, certificates signed by the openssl command line.
import { execFileSync } from 'node:child_process';
import { constants, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { possessionMessage } from './index.ts';

export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa' | 'rsa-1024' | 'ed25519';

export interface TestCert {
  pem: string;
  key: KeyObject;
  keyType: KeyType;
}

export interface CertSpec {
  cn: string;
  keyType?: KeyType;
  /** Signed by this certificate; self-signed when absent. */
  issuer?: TestCert;
  ca?: boolean;
  pathLen?: number;
  /** openssl keyUsage value; default digitalSignature for leaves, keyCertSign,cRLSign for CAs. */
  keyUsage?: string | null;
  /** openssl extendedKeyUsage value; default clientAuth for leaves, none for CAs. */
  extKeyUsage?: string | null;
  san?: string[];
  days?: number;
}

function generate(type: KeyType): KeyObject {
  switch (type) {
    case 'ec-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'ec-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
    case 'rsa':
      return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    case 'rsa-1024':
      return generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    case 'ed25519':
      return generateKeyPairSync('ed25519').privateKey;
  }
}

/** A throwaway directory of openssl inputs; `close()` removes it. */
export class TestPki {
  readonly #dir = mkdtempSync(join(tmpdir(), 'writ-x509pop-'));
  #n = 0;

  issue(spec: CertSpec): TestCert {
    const n = ++this.#n;
    const keyType = spec.keyType ?? 'ec-p256';
    const key = generate(keyType);
    const file = (name: string) => join(this.#dir, `${n}.${name}`);
    writeFileSync(file('key.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    const ca = spec.ca ?? false;
    const ext = ['[ext]', 'subjectKeyIdentifier = hash'];
    ext.push(
      `basicConstraints = critical, CA:${ca ? 'TRUE' : 'FALSE'}${spec.pathLen === undefined ? '' : `, pathlen:${spec.pathLen}`}`,
    );
    const keyUsage =
      spec.keyUsage === undefined ? (ca ? 'keyCertSign, cRLSign' : 'digitalSignature') : spec.keyUsage;
    if (keyUsage) ext.push(`keyUsage = critical, ${keyUsage}`);
    const eku = spec.extKeyUsage === undefined ? (ca ? null : 'clientAuth') : spec.extKeyUsage;
    if (eku) ext.push(`extendedKeyUsage = ${eku}`);
    if (spec.san?.length) ext.push(`subjectAltName = ${spec.san.join(', ')}`);
    if (spec.issuer) ext.push('authorityKeyIdentifier = keyid');
    writeFileSync(file('ext.cnf'), `${ext.join('\n')}\n`);
    this.#openssl([
      'req',
      '-new',
      '-key',
      file('key.pem'),
      '-subj',
      `/CN=${spec.cn}/O=Writ tests`,
      '-out',
      file('csr.pem'),
    ]);
    const args = ['x509', '-req', '-in', file('csr.pem'), '-days', String(spec.days ?? 30)];
    args.push(
      '-set_serial',
      `0x${randomBytes(12).toString('hex')}`,
      '-extfile',
      file('ext.cnf'),
      '-extensions',
      'ext',
    );
    const signer = spec.issuer;
    if (signer) {
      writeFileSync(file('issuer.pem'), signer.pem);
      writeFileSync(file('issuer-key.pem'), signer.key.export({ type: 'pkcs8', format: 'pem' }));
      args.push('-CA', file('issuer.pem'), '-CAkey', file('issuer-key.pem'));
    } else {
      args.push('-signkey', file('key.pem'));
    }
    if ((signer?.keyType ?? keyType) !== 'ed25519') args.push('-sha256');
    args.push('-out', file('cert.pem'));
    this.#openssl(args);
    return { pem: readFileSync(file('cert.pem'), 'utf8'), key, keyType };
  }

  #openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  close(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** The workload's proof of possession: its leaf key's signature over the nonce, base64url. */
export function signNonce(leaf: TestCert, nonce: string): string {
  const message = possessionMessage(nonce);
  switch (leaf.keyType) {
    case 'ec-p256':
      return sign('sha256', message, { key: leaf.key, dsaEncoding: 'der' }).toString('base64url');
    case 'ec-p384':
      return sign('sha384', message, { key: leaf.key, dsaEncoding: 'der' }).toString('base64url');
    case 'rsa':
    case 'rsa-1024':
      return sign('sha256', message, {
        key: leaf.key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
      }).toString('base64url');
    case 'ed25519':
      return sign(null, message, leaf.key).toString('base64url');
  }
}
