// The x509pop attestor: a certificate chain to a configured CA and a signature over a broker-issued nonce.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SELECTOR_PATTERN } from '../../src/attestation/selectors.ts';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorHost,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import { seconds } from '../../src/store/types.ts';
import {
  ChainError,
  loadTrustAnchors,
  MAX_CHAIN_LENGTH,
  type ParsedCertificate,
  parsePemCertificate,
  type TrustAnchor,
  verifyChain,
  verifyPossession,
} from './chain.ts';
import { type X509PopConfig, x509PopConfigSchema } from './config.ts';

export const NAME = 'x509pop';
/** The store scope of outstanding nonces. */
const NONCE_SCOPE = 'x509pop';
/** Domain separation: what the leaf key signs is this prefix followed by the nonce, as ASCII. */
export const SIGNATURE_PREFIX = 'writ-x509pop-v1:';

// 32 random bytes, base64url.
const NONCE_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const evidenceSchema = z.strictObject({
  nonce: z.string().regex(NONCE_PATTERN),
  chain: z
    .array(
      z
        .string()
        .min(1)
        .max(16 * 1024),
    )
    .min(1)
    .max(MAX_CHAIN_LENGTH),
  signature: z.string().regex(/^[A-Za-z0-9_-]{1,1400}$/),
});

/** The bytes the workload signs for `nonce`. */
export function possessionMessage(nonce: string): Buffer {
  return Buffer.from(`${SIGNATURE_PREFIX}${nonce}`, 'ascii');
}

// The store keeps a hash of the nonce, like every other opaque key.
const nonceKey = (nonce: string): string => createHash('sha256').update(nonce).digest('base64url');

export interface Challenge {
  nonce: string;
  expiresAt: number;
}

/** Issues a single-use nonce that lives `config.nonceTtl` seconds. */
export async function createChallenge(
  host: Pick<AttestorHost, 'store' | 'clock'>,
  config: X509PopConfig,
): Promise<Challenge> {
  const nonce = randomBytes(32).toString('base64url');
  const expiresAt = seconds(host.clock) + config.nonceTtl;
  await host.store.putEphemeral(NONCE_SCOPE, nonceKey(nonce), NAME, expiresAt);
  return { nonce, expiresAt };
}

class X509PopAttestor implements Attestor {
  readonly name = NAME;
  readonly legacy = false;
  // It defines no tasks: the caller names one or the broker generates one.
  readonly taskNamespace = NAME;
  readonly #host: AttestorHost;
  readonly #anchors: TrustAnchor[];

  constructor(host: AttestorHost, anchors: TrustAnchor[]) {
    this.#host = host;
    this.#anchors = anchors;
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const parsed = evidenceSchema.safeParse(evidence);
    if (!parsed.success) {
      throw new AttestationError(
        'evidence must be {"nonce": "<challenge nonce>", "chain": ["<PEM>", ...], "signature": "<base64url>"}',
      );
    }
    const { nonce, chain, signature } = parsed.data;
    // Taken before anything is verified: a nonce is spent by its first use, whatever the outcome.
    const taken = await this.#host.store.takeEphemeral(NONCE_SCOPE, nonceKey(nonce));
    if (taken !== NAME) throw new AttestationError('the nonce is unknown, used or expired');

    let leaf: ParsedCertificate;
    let anchor: TrustAnchor;
    try {
      ({ leaf, anchor } = verifyChain(chain.map(parsePemCertificate), this.#anchors, this.#host.clock()));
    } catch (e) {
      if (e instanceof ChainError) throw new AttestationError(e.reason);
      throw e;
    }
    if (!verifyPossession(leaf, possessionMessage(nonce), Buffer.from(signature, 'base64url'))) {
      throw new AttestationError('the signature does not verify with the leaf certificate key');
    }
    return {
      selectors: selectorsOf(leaf, anchor),
      expiresAt: Math.floor(leaf.notAfter / 1000),
    };
  }
}

/** Selectors from the leaf and its anchor; a name that cannot be a selector value is left out. */
function selectorsOf(leaf: ParsedCertificate, anchor: TrustAnchor): string[] {
  const candidates = [
    ...leaf.commonNames.map((cn) => `${NAME}:subject:cn:${cn}`),
    ...leaf.dnsNames.map((dns) => `${NAME}:san:dns:${dns}`),
    ...leaf.uris.map((uri) => `${NAME}:san:uri:${uri}`),
    `${NAME}:ca:fingerprint:${anchor.certificate.fingerprint}`,
    `${NAME}:serial:${leaf.serial}`,
  ];
  return [...new Set(candidates.filter((s) => s.length <= 2200 && SELECTOR_PATTERN.test(s)))];
}

function anchorsOf(config: X509PopConfig): TrustAnchor[] {
  if (config.caBundle !== undefined) return loadTrustAnchors(config.caBundle);
  const file = config.caFile as string;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new Error(`attestors.x509pop.caFile: cannot read ${file}`, { cause });
  }
  try {
    return loadTrustAnchors(pem);
  } catch (cause) {
    throw new Error(`attestors.x509pop.caFile: ${(cause as Error).message}`, { cause });
  }
}

export const x509PopPlugin: AttestorPlugin<X509PopConfig> = {
  name: NAME,
  configSchema: x509PopConfigSchema,
  create: (config, host) => new X509PopAttestor(host, anchorsOf(config)),
};
