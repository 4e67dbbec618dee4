// Checks of caller-supplied values for the CA (names, addresses, serials, URLs); failures are TypeErrors.
import { isIP } from 'node:net';
import { validateSpiffeId } from '../../spiffe/spiffe-id.ts';

const SERIAL_HEX = /^[0-9a-f]{1,40}$/i;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A certificate serial in hex (as recorded for a credential) to the magnitude bytes of a positive INTEGER. */
export function serialBytes(hex: string): Buffer {
  if (typeof hex !== 'string' || !SERIAL_HEX.test(hex))
    throw new TypeError('serialHex must be 1-40 hex digits');
  const bytes = Buffer.from(hex.length % 2 === 1 ? `0${hex}` : hex, 'hex');
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  if (bytes[start] === 0) throw new TypeError('serialHex must be positive');
  return bytes.subarray(start);
}

/** A DNS name for a dNSName SAN: LDH labels, optionally a leftmost wildcard label; lowercased. */
export function checkDnsName(name: string): string {
  if (typeof name !== 'string') throw new TypeError('dns names must be strings');
  const lower = name.toLowerCase();
  const labels = lower.split('.');
  const ok =
    lower.length > 0 &&
    lower.length <= 253 &&
    labels.every((l, i) => DNS_LABEL.test(l) || (i === 0 && l === '*' && labels.length > 2));
  if (!ok) throw new TypeError(`not a dns name: ${JSON.stringify(name.slice(0, 64))}`);
  return lower;
}

/** An IPv4 or IPv6 address as the 4 or 16 octets of an iPAddress SAN (RFC 5280 §4.2.1.6). */
export function ipBytes(ip: string): Buffer {
  // isIP accepts zone ids (fe80::1%eth0), which have no place in a certificate.
  const family = typeof ip === 'string' && !ip.includes('%') ? isIP(ip) : 0;
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6) throw new TypeError(`not an ip address: ${JSON.stringify(String(ip).slice(0, 64))}`);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, v4.index)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return out;
}

/** The CRL distribution point URL. */
export function checkCrlUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError('crlUrl must be an absolute url');
  }
  // IA5String and no rewriting: the URL goes into certificates exactly as given.
  if (
    (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') ||
    parsed.href !== url ||
    url.length > 2048 ||
    !/^[\x21-\x7e]+$/.test(url)
  ) {
    throw new TypeError('crlUrl must be a normalized ascii http(s) url');
  }
  return url;
}

export function checkTrustDomain(td: string): string {
  if (typeof td !== 'string' || td.includes('/') || validateSpiffeId(`spiffe://${td}`) !== null) {
    throw new TypeError('trustDomain is not a valid trust domain name');
  }
  return td;
}
