// PEM (RFC 7468) for the X.509 module: strict base64 inside blocks, one block or many.

export interface PemBlock {
  label: string;
  der: Buffer;
}

/** Malformed PEM. Internal: callers turn it into their own error with a safe message. */
export class PemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PemError';
  }
}

const BEGIN = '-----BEGIN ';
const END = '-----END ';
const DASHES = '-----';
const LABEL = /^[\x21-\x2c\x2e-\x7e]+(?:[ -][\x21-\x2c\x2e-\x7e]+)*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function isPemWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function onlyWhitespace(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (!isPemWhitespace(text.charCodeAt(i))) return false;
  return true;
}

const WHITESPACE = /[ \t\r\n]+/g;
// Before "==" the last character carries 2 bits of data, before "=" 4: the rest of its 6 bits must be zero.
const SPARE_BITS_BEFORE_TWO_PADS = 0x0f;
const SPARE_BITS_BEFORE_ONE_PAD = 0x03;
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function decodeBase64Strict(body: string): Buffer {
  const compact = body.replace(WHITESPACE, '');
  if (compact.length === 0 || compact.length % 4 !== 0 || !BASE64.test(compact)) {
    throw new PemError('pem body is not base64');
  }
  // Node's decoder ignores non-zero padding bits; canonical base64 has none (RFC 4648 §3.5).
  const padding = compact.endsWith('==') ? 2 : compact.endsWith('=') ? 1 : 0;
  if (padding > 0) {
    const last = B64.indexOf(compact[compact.length - padding - 1]!);
    if ((last & (padding === 2 ? SPARE_BITS_BEFORE_TWO_PADS : SPARE_BITS_BEFORE_ONE_PAD)) !== 0) {
      throw new PemError('pem body is not canonical base64');
    }
  }
  return Buffer.from(compact, 'base64');
}

/**
 * Every PEM block of `text`, in order. Text outside blocks is refused unless `allowText` (RFC 7468 allows
 * explanatory text in files; a request body has no business carrying any).
 */
export function pemBlocks(text: string, opts: { allowText: boolean }): PemBlock[] {
  const blocks: PemBlock[] = [];
  let pos = 0;
  for (;;) {
    const begin = text.indexOf(BEGIN, pos);
    const outside = text.slice(pos, begin < 0 ? text.length : begin);
    if (!opts.allowText && !onlyWhitespace(outside)) throw new PemError('text outside a pem block');
    if (begin < 0) break;
    const labelEnd = text.indexOf(DASHES, begin + BEGIN.length);
    if (labelEnd < 0) throw new PemError('pem header is malformed');
    const label = text.slice(begin + BEGIN.length, labelEnd);
    if (!LABEL.test(label)) throw new PemError('pem label is malformed');
    const footer = `${END}${label}${DASHES}`;
    const bodyStart = labelEnd + DASHES.length;
    const end = text.indexOf(footer, bodyStart);
    if (end < 0) throw new PemError('pem block has no matching footer');
    const body = text.slice(bodyStart, end);
    if (body.includes(DASHES)) throw new PemError('pem blocks are nested or malformed');
    blocks.push({ label, der: decodeBase64Strict(body) });
    pos = end + footer.length;
  }
  return blocks;
}
