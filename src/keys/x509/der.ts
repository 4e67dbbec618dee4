// DER for the X.509 module: node-forge's asn1 codec held to canonical DER, with small node builders and readers.
import { createRequire } from 'node:module';
import type * as Forge from 'node-forge';

// node-forge is CommonJS with ambient typings that declare no default export, and Node's ESM loader cannot
// see its named exports; require is the one way that works for tsc, tsx and vitest alike.
const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;
const asn1 = forge.asn1;

export type Asn1 = Forge.asn1.Asn1;

export const UNIVERSAL = asn1.Class.UNIVERSAL;
export const CONTEXT = asn1.Class.CONTEXT_SPECIFIC;
export const T = asn1.Type;

/** Malformed or non-canonical DER. Internal: callers turn it into their own error with a safe message. */
export class DerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DerError';
  }
}

// The published typings only know the boolean form of the options argument.
interface FromDerOptions {
  strict: boolean;
  parseAllBytes: boolean;
  decodeBitStrings: boolean;
  maxDepth: number;
}
const fromDer = asn1.fromDer as unknown as (bytes: string, options: FromDerOptions) => Asn1;

export interface DecodeLimits {
  maxBytes: number;
  /** Nesting depth forge may recurse to (the outermost element is depth 0). */
  maxDepth: number;
}

export function encode(node: Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'latin1');
}

/**
 * Decodes one DER element that must span the whole input. The input must be canonical DER: forge reads some
 * BER (indefinite or non-minimal lengths, padded integers) and re-encodes it differently, so anything that
 * does not re-encode to the same bytes is refused. That also makes `encode(child)` the child's exact input
 * bytes, which is what signatures are checked over and what is copied into certificates.
 */
export function decode(der: Buffer, limits: DecodeLimits): Asn1 {
  if (der.length < 2) throw new DerError('der is empty');
  if (der.length > limits.maxBytes) throw new DerError('der is too large');
  let node: Asn1;
  try {
    node = fromDer(der.toString('latin1'), {
      strict: true,
      parseAllBytes: true,
      // Guessing whether a BIT STRING holds ASN.1 would make keys and signatures parse as structures.
      decodeBitStrings: false,
      maxDepth: limits.maxDepth,
    });
  } catch (cause) {
    throw new DerError('der is malformed', { cause });
  }
  if (!encode(node).equals(der)) throw new DerError('der is not canonical');
  return node;
}

// ---- builders ----

const oidCache = new Map<string, string>();

export function oid(dotted: string): Asn1 {
  let content = oidCache.get(dotted);
  if (content === undefined) {
    content = asn1.oidToDer(dotted).getBytes();
    oidCache.set(dotted, content);
  }
  return asn1.create(UNIVERSAL, T.OID, false, content);
}

export function seq(...children: Asn1[]): Asn1 {
  return asn1.create(UNIVERSAL, T.SEQUENCE, true, children);
}

export function set(...children: Asn1[]): Asn1 {
  return asn1.create(UNIVERSAL, T.SET, true, children);
}

export function nul(): Asn1 {
  return asn1.create(UNIVERSAL, T.NULL, false, '');
}

export function bool(value: boolean): Asn1 {
  return asn1.create(UNIVERSAL, T.BOOLEAN, false, value ? '\xff' : '\x00');
}

/** A non-negative INTEGER from its unsigned big-endian magnitude, minimally encoded. */
export function uintFromBytes(magnitude: Uint8Array): Asn1 {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  let bytes = Buffer.from(magnitude.subarray(start));
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if ((bytes[0]! & 0x80) !== 0) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return asn1.create(UNIVERSAL, T.INTEGER, false, bytes.toString('latin1'));
}

export function uint(value: bigint | number): Asn1 {
  const n = BigInt(value);
  if (n < 0n) throw new RangeError('integer must not be negative');
  let hex = n.toString(16);
  if (hex.length % 2 === 1) hex = `0${hex}`;
  return uintFromBytes(Buffer.from(hex, 'hex'));
}

export function enumerated(value: number): Asn1 {
  if (!Number.isInteger(value) || value < 0 || value > 127) throw new RangeError('enumerated out of range');
  return asn1.create(UNIVERSAL, T.ENUMERATED, false, String.fromCharCode(value));
}

export function bitString(bytes: Uint8Array, unusedBits = 0): Asn1 {
  return asn1.create(
    UNIVERSAL,
    T.BITSTRING,
    false,
    String.fromCharCode(unusedBits) + Buffer.from(bytes).toString('latin1'),
  );
}

/** A named-bit BIT STRING (RFC 5280 KeyUsage): DER drops trailing zero bits and counts them as unused. */
export function namedBits(bits: readonly number[]): Asn1 {
  const max = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(max / 8) + 1);
  for (const bit of bits) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return bitString(bytes, 7 - (max & 7));
}

export function octetString(bytes: Uint8Array): Asn1 {
  return asn1.create(UNIVERSAL, T.OCTETSTRING, false, Buffer.from(bytes).toString('latin1'));
}

export function utf8String(text: string): Asn1 {
  return asn1.create(UNIVERSAL, T.UTF8, false, Buffer.from(text, 'utf8').toString('latin1'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function printableString(text: string): Asn1 {
  if (!PRINTABLE.test(text)) throw new RangeError('not a PrintableString');
  return asn1.create(UNIVERSAL, T.PRINTABLESTRING, false, text);
}

export function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++)
    if (text.charCodeAt(i) > 0x7e || text.charCodeAt(i) < 0x20) return false;
  return true;
}

/** `[n] IMPLICIT` of a primitive type: the tag replaces the type's own; the content stays. */
export function implicitPrimitive(tagNumber: number, content: string | Uint8Array): Asn1 {
  const value = typeof content === 'string' ? content : Buffer.from(content).toString('latin1');
  return asn1.create(CONTEXT, tagNumber, false, value);
}

/** `[n]` constructed: EXPLICIT wrapping of one element, or IMPLICIT of a SEQUENCE/SET (its elements). */
export function contextConstructed(tagNumber: number, ...children: Asn1[]): Asn1 {
  return asn1.create(CONTEXT, tagNumber, true, children);
}

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050, always UTC with seconds. */
export function time(epochSeconds: number): Asn1 {
  if (!Number.isSafeInteger(epochSeconds)) throw new RangeError('time must be whole epoch seconds');
  const d = new Date(epochSeconds * 1000);
  const year = d.getUTCFullYear();
  // NaN (a time past the Date range) fails both comparisons: test for being inside instead.
  if (!(year >= 1950 && year <= 9999)) throw new RangeError('time out of range');
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  if (year < 2050) return asn1.create(UNIVERSAL, T.UTCTIME, false, `${p2(year % 100)}${rest}`);
  return asn1.create(UNIVERSAL, T.GENERALIZEDTIME, false, `${year}${rest}`);
}

/** `Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }` */
export function extension(extnId: string, critical: boolean, value: Asn1): Asn1 {
  const v = octetString(encode(value));
  return critical ? seq(oid(extnId), bool(true), v) : seq(oid(extnId), v);
}

// ---- readers (each names what it reads, so a caller's error says where the input went wrong) ----

export function expectTag(
  node: Asn1 | undefined,
  tagClass: number,
  type: number,
  constructed: boolean,
  what: string,
): Asn1 {
  if (
    node === undefined ||
    node.tagClass !== tagClass ||
    node.type !== type ||
    node.constructed !== constructed
  ) {
    throw new DerError(`${what} is missing or has the wrong type`);
  }
  return node;
}

/** The elements of a SEQUENCE (or of another constructed tag when given). */
export function elements(
  node: Asn1 | undefined,
  what: string,
  type: number = T.SEQUENCE,
  tagClass = UNIVERSAL,
): Asn1[] {
  const n = expectTag(node, tagClass, type, true, what);
  if (!Array.isArray(n.value)) throw new DerError(`${what} is malformed`);
  return n.value;
}

/** The content octets of a primitive element, as a forge binary string. */
export function contentOf(node: Asn1 | undefined, type: number, what: string, tagClass = UNIVERSAL): string {
  const n = expectTag(node, tagClass, type, false, what);
  if (typeof n.value !== 'string') throw new DerError(`${what} is malformed`);
  return n.value;
}

export function readOid(node: Asn1 | undefined, what: string): string {
  const content = contentOf(node, T.OID, what);
  if (content.length === 0) throw new DerError(`${what} is malformed`);
  let dotted: string;
  try {
    dotted = asn1.derToOid(content);
  } catch (cause) {
    throw new DerError(`${what} is malformed`, { cause });
  }
  // forge reads padded arcs (0x80 continuation bytes) as the same OID; OpenSSL refuses them. Only the
  // minimal encoding is the OID, or a key could pass here and break the certificate made for it.
  if (oid(dotted).value !== content) throw new DerError(`${what} is not minimally encoded`);
  return dotted;
}

/** A non-negative INTEGER small enough for a JS number. */
export function readSmallUint(node: Asn1 | undefined, what: string): number {
  const content = contentOf(node, T.INTEGER, what);
  if (content.length === 0 || content.length > 6 || (content.charCodeAt(0) & 0x80) !== 0) {
    throw new DerError(`${what} is out of range`);
  }
  let n = 0;
  for (let i = 0; i < content.length; i++) n = n * 256 + content.charCodeAt(i);
  return n;
}

/** The bits of a BIT STRING with no unused bits (keys, signatures, hashes). */
export function readOctetAlignedBits(node: Asn1 | undefined, what: string): Buffer {
  const content = contentOf(node, T.BITSTRING, what);
  if (content.length < 1 || content.charCodeAt(0) !== 0) throw new DerError(`${what} is malformed`);
  return Buffer.from(content.slice(1), 'latin1');
}

/** Named bits of a BIT STRING (KeyUsage): whether bit `n` is set. */
export function readNamedBits(node: Asn1 | undefined, what: string): (bit: number) => boolean {
  const content = contentOf(node, T.BITSTRING, what);
  if (content.length < 1 || content.charCodeAt(0) > 7) throw new DerError(`${what} is malformed`);
  const bytes = Buffer.from(content.slice(1), 'latin1');
  return (bit) => ((bytes[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0;
}

const UTC_TIME = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;
const GENERALIZED_TIME = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/** RFC 5280 Time (UTCTime or GeneralizedTime, seconds, `Z`) as epoch seconds. */
export function readTime(node: Asn1 | undefined, what: string): number {
  let m: RegExpExecArray | null = null;
  let year: number;
  if (node?.type === T.UTCTIME) {
    m = UTC_TIME.exec(contentOf(node, T.UTCTIME, what));
    if (!m) throw new DerError(`${what} is malformed`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else {
    m = GENERALIZED_TIME.exec(contentOf(node, T.GENERALIZEDTIME, what));
    if (!m) throw new DerError(`${what} is malformed`);
    year = Number(m[1]);
  }
  const [month, day, hour, minute, second] = m.slice(2).map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(ms);
  if (
    Number.isNaN(ms) ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    check.getUTCHours() !== hour ||
    check.getUTCMinutes() !== minute ||
    check.getUTCSeconds() !== second
  ) {
    throw new DerError(`${what} is not a valid date`);
  }
  return ms / 1000;
}
