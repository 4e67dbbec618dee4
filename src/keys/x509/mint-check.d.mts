// Types of mint-check.mjs.
import type { KeyObject, X509Certificate } from 'node:crypto';

export type MintCheckFailure =
  | 'parse'
  | 'signature'
  | 'issuer'
  | 'ca flag'
  | 'serial'
  | 'validity'
  | 'public key'
  | 'subject alternative name'
  | 'extended key usage';

export declare const MINT_CHECK_FAILURES: readonly MintCheckFailure[];

/** What the CA meant to mint. */
export interface Meant {
  /** The CA's certificate and public key. */
  issuer: X509Certificate;
  issuerKey: KeyObject;
  /** Lowercase hex. */
  serialHex: string;
  /** Epoch seconds. */
  notBefore: number;
  notAfter: number;
  /** The CA's own end (the earliest on its path to the root). */
  caNotAfter: number;
  /** When given, the certificate's key as OpenSSL reads it must equal this one. */
  key: KeyObject | undefined;
  eku: readonly string[];
  sanOk(cert: X509Certificate): boolean;
}

export declare function readBack(
  der: Uint8Array,
  meant: Meant,
): { failed: null; cert: X509Certificate } | { failed: MintCheckFailure; cause?: unknown };

/** What the CA's thread is given once. */
export interface ThreadCa {
  issuer: X509Certificate;
  issuerKey: KeyObject;
  privateKey: KeyObject;
  hash: string;
  /** The signature's AlgorithmIdentifier, DER. */
  algorithm: Uint8Array;
  caNotAfter: number;
  eku: readonly string[];
}

export interface ThreadRequest {
  id: number;
  tbs: Uint8Array;
  serialHex: string;
  notBefore: number;
  notAfter: number;
  key: KeyObject;
  san: string;
}

export type ThreadAnswer =
  | { id: number; failed: null; serial: string; der: Buffer; signature: Buffer }
  | { id: number; failed: MintCheckFailure | 'error'; serial: null };

export declare function signAndReadBack(request: ThreadRequest, ca: ThreadCa): ThreadAnswer;
