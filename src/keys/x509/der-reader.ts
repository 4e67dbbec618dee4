// A zero-copy reader for canonical DER over Buffers: the CSR and SubjectPublicKeyInfo parsers of the issuance
// hot path. Elements are offsets into the input; nothing is copied or re-encoded.
import { DerError } from './der.ts';
import { OID } from './oids.ts';

/** One element: its identifier octet, where it starts, where its content starts and where it ends. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number < 31). */
  readonly tag: number;
  readonly start: number;
  readonly content: number;
  readonly end: number;
}

export interface WalkLimits {
  maxBytes: number;
  /** Nesting depth allowed (the outermost element is depth 0). */
  maxDepth: number;
}

// Identifier octets of the universal types the X.509 module reads.
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

const CONSTRUCTED = 0x20;
const CLASS_MASK = 0xc0;
const UNIVERSAL_CLASS = 0x00;
const CONTEXT_CLASS = 0x80;

/** `[n]` constructed, context-specific (n < 31). */
export function contextTag(n: number): number {
  return CONTEXT_CLASS | CONSTRUCTED | n;
}

/**
 * The element at `at`, which must end by `limit`. DER only: one identifier octet (tag numbers >= 31 are not
 * used by anything read here), a definite length in the fewest octets, content inside `limit`.
 */
export function readTlv(der: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new DerError('der is truncated');
  const tag = der[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('der is malformed: high tag numbers are not accepted');
  if (tag === 0) throw new DerError('der is malformed: end-of-contents outside an indefinite length');
  const first = der[at + 1]!;
  let content = at + 2;
  let length: number;
  if (first < 0x80) {
    length = first;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw new DerError('der is malformed: indefinite lengths are not der');
    if (count > 4) throw new DerError('der is malformed: length is too long');
    if (content + count > limit) throw new DerError('der is truncated');
    if (der[content] === 0) throw new DerError('der is not canonical: the length has a leading zero');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[content + i]!;
    if (length < 0x80) throw new DerError('der is not canonical: a long-form length where a short one fits');
    content += count;
  }
  const end = content + length;
  if (end > limit) throw new DerError('der is truncated');
  return { tag, start: at, content, end };
}

function isConstructed(tag: number): boolean {
  return (tag & CONSTRUCTED) !== 0;
}

/**
 * Checks that `der` is exactly one element of canonical DER structure, walking every constructed element to
 * `maxDepth`: definite minimal lengths, children that fill their parent exactly, no trailing bytes, only
 * SEQUENCE and SET constructed among the universal types (DER has no constructed strings), and minimally
 * encoded INTEGERs. Returns the root.
 */
export function walkDer(der: Buffer, limits: WalkLimits): Tlv {
  if (!Buffer.isBuffer(der)) throw new TypeError('der must be a Buffer');
  if (der.length < 2) throw new DerError('der is empty');
  if (der.length > limits.maxBytes) throw new DerError('der is too large');
  const root = readTlv(der, 0, der.length);
  if (root.end !== der.length) throw new DerError('der is malformed: trailing bytes');
  walk(der, root, 0, limits.maxDepth);
  return root;
}

function walk(der: Buffer, node: Tlv, depth: number, maxDepth: number): void {
  if (node.tag === TAG.INTEGER) {
    checkInteger(der, node);
    return;
  }
  if (!isConstructed(node.tag)) return;
  if ((node.tag & CLASS_MASK) === UNIVERSAL_CLASS && node.tag !== TAG.SEQUENCE && node.tag !== TAG.SET) {
    throw new DerError('der is malformed: a constructed primitive type');
  }
  if (node.content === node.end) return;
  if (depth + 1 > maxDepth) throw new DerError('der is malformed: nested too deeply');
  for (let at = node.content; at < node.end; ) {
    const child = readTlv(der, at, node.end);
    walk(der, child, depth + 1, maxDepth);
    at = child.end;
  }
}

/** X.690 §8.3.2: at least one content octet, and no first nine bits all zero or all one. */
function checkInteger(der: Buffer, node: Tlv): void {
  const length = node.end - node.content;
  if (length === 0) throw new DerError('der is malformed: an empty integer');
  if (length > 1) {
    const first = der[node.content]!;
    const topOfNext = der[node.content + 1]! & 0x80;
    if ((first === 0x00 && topOfNext === 0) || (first === 0xff && topOfNext !== 0)) {
      throw new DerError('der is not canonical: an integer is not minimally encoded');
    }
  }
}

/** The elements of a constructed element of identifier `tag` (SEQUENCE unless given). */
export function childrenOf(
  der: Buffer,
  node: Tlv | undefined,
  what: string,
  tag: number = TAG.SEQUENCE,
): Tlv[] {
  expect(node, tag, what);
  const out: Tlv[] = [];
  for (let at = node.content; at < node.end; ) {
    const child = readTlv(der, at, node.end);
    out.push(child);
    at = child.end;
  }
  return out;
}

export function expect(node: Tlv | undefined, tag: number, what: string): asserts node is Tlv {
  if (node === undefined || node.tag !== tag) throw new DerError(`${what} is missing or has the wrong type`);
}

/** The content octets of an element of identifier `tag` (a view, not a copy). */
export function contentBytes(der: Buffer, node: Tlv | undefined, tag: number, what: string): Buffer {
  expect(node, tag, what);
  return der.subarray(node.content, node.end);
}

/** The element's whole encoding (a view). */
export function bytesOf(der: Buffer, node: Tlv): Buffer {
  return der.subarray(node.start, node.end);
}

/** The content octets of an OBJECT IDENTIFIER given as dotted text. */
export function oidContent(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) throw new RangeError('bad oid');
  const out: number[] = [];
  const push = (value: number): void => {
    const bytes = [value % 128];
    for (let v = Math.floor(value / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift((v % 128) | 0x80);
    out.push(...bytes);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const arc of arcs.slice(2)) push(arc);
  return Buffer.from(out);
}

// The OIDs the module knows, by content octets: most reads are one of them and need no decoding.
const KNOWN_OIDS: ReadonlyMap<string, string> = new Map(
  Object.values(OID).map((dotted) => [oidContent(dotted).toString('latin1'), dotted]),
);

/** An OBJECT IDENTIFIER as dotted text; only the minimal encoding of each arc is accepted (as OpenSSL). */
export function readOidAt(der: Buffer, node: Tlv | undefined, what: string): string {
  const content = contentBytes(der, node, TAG.OID, what);
  if (content.length === 0 || content.length > 64) throw new DerError(`${what} is malformed`);
  const known = KNOWN_OIDS.get(content.toString('latin1'));
  if (known !== undefined) return known;
  const arcs: number[] = [];
  let value = 0;
  let fresh = true;
  for (let i = 0; i < content.length; i++) {
    const byte = content[i]!;
    if (fresh && byte === 0x80) throw new DerError(`${what} is malformed: an arc is not minimally encoded`);
    fresh = false;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError(`${what} is malformed`);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
      fresh = true;
    }
  }
  if (!fresh) throw new DerError(`${what} is malformed`);
  const head = arcs[0]!;
  const first = head < 40 ? 0 : head < 80 ? 1 : 2;
  return [first, head - first * 40, ...arcs.slice(1)].join('.');
}

/** A non-negative INTEGER small enough for a JS number (minimally encoded). */
export function readSmallUintAt(der: Buffer, node: Tlv | undefined, what: string): number {
  const content = contentBytes(der, node, TAG.INTEGER, what);
  if (content.length === 0 || content.length > 6 || (content[0]! & 0x80) !== 0) {
    throw new DerError(`${what} is out of range`);
  }
  if (content.length > 1 && content[0] === 0 && (content[1]! & 0x80) === 0) {
    throw new DerError(`${what} is not minimally encoded`);
  }
  let n = 0;
  for (let i = 0; i < content.length; i++) n = n * 256 + content[i]!;
  return n;
}

/** The bits of a BIT STRING with no unused bits (keys, signatures), as a view. */
export function readOctetAlignedBitsAt(der: Buffer, node: Tlv | undefined, what: string): Buffer {
  const content = contentBytes(der, node, TAG.BIT_STRING, what);
  if (content.length < 1 || content[0] !== 0) throw new DerError(`${what} is malformed`);
  return content.subarray(1);
}

/** A NULL element: present and empty. */
export function readNullAt(der: Buffer, node: Tlv | undefined, what: string): void {
  if (contentBytes(der, node, TAG.NULL, what).length !== 0) throw new DerError(`${what} must be null`);
}
