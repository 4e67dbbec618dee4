// Configuration of the static_key attestor: SHA-256 hashes of pre-shared API keys, never the keys.
import { z } from 'zod';
import { SELECTOR_PATTERN } from '../../src/attestation/selectors.ts';

export const NAME = 'static_key';
const DAY = 86_400;

const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;
const BASE64URL_DIGEST = /^[A-Za-z0-9_-]{43}$/;
const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** The 32 digest bytes of a configured hash, written as hex (64 digits) or base64url (43 characters). */
export function digestBytes(text: string): Buffer | undefined {
  if (HEX_DIGEST.test(text)) return Buffer.from(text, 'hex');
  if (BASE64URL_DIGEST.test(text)) {
    const bytes = Buffer.from(text, 'base64url');
    // Canonical only: the last character may not carry stray bits.
    if (bytes.length === 32 && bytes.toString('base64url') === text) return bytes;
  }
  return undefined;
}

const ttlCap = z.number().int().min(1).max(DAY);

const keySchema = z
  .strictObject({
    id: z
      .string()
      .regex(KEY_NAME, 'letters, digits and _ . - only (1-64)')
      .describe('Name of the key; attested as the selector static_key:id:<id>.'),
    sha256: z
      .string()
      .refine((s) => digestBytes(s) !== undefined, 'must be a SHA-256 digest in hex (64) or base64url (43)')
      .describe('SHA-256 of the key, hex or base64url: `printf %s "$KEY" | sha256sum`.'),
    selectors: z
      .record(z.string().regex(KEY_NAME, 'letters, digits and _ . - only (1-64)'), z.string().min(1))
      .optional()
      .describe('More selectors this key attests, as {<key>: <value>} -> static_key:<key>:<value>.'),
    ttlCap: ttlCap.optional().describe('Cap on credentials from this key, seconds; the lower cap wins.'),
  })
  .superRefine((k, ctx) => {
    for (const [key, value] of Object.entries(k.selectors ?? {})) {
      if (key === 'id') {
        ctx.addIssue({ code: 'custom', path: ['selectors', key], message: '"id" is reserved' });
      } else if (!SELECTOR_PATTERN.test(`${NAME}:${key}:${value}`)) {
        ctx.addIssue({ code: 'custom', path: ['selectors', key], message: 'not a valid selector value' });
      }
    }
  });

export const staticKeyConfigSchema = z
  .strictObject({
    keys: z
      .array(keySchema)
      .min(1)
      .max(1000)
      .describe('The accepted keys, each {id, sha256, selectors?, ttlCap?}.'),
    ttlCap: ttlCap
      .default(300)
      .describe('Cap on the lifetime of every credential a static key yields, seconds.'),
  })
  .superRefine((c, ctx) => {
    const ids = new Set<string>();
    const digests = new Set<string>();
    c.keys.forEach((k, i) => {
      if (ids.has(k.id)) ctx.addIssue({ code: 'custom', path: ['keys', i, 'id'], message: 'duplicate id' });
      ids.add(k.id);
      const hex = digestBytes(k.sha256)?.toString('hex');
      if (hex !== undefined) {
        if (digests.has(hex)) {
          ctx.addIssue({
            code: 'custom',
            path: ['keys', i, 'sha256'],
            message: 'the same key is listed twice',
          });
        }
        digests.add(hex);
      }
    });
  })
  .describe(
    'The static_key attestor (legacy): pre-shared API keys, configured as SHA-256 hashes. Every credential ' +
      'it yields is marked legacy and capped. Configuring this section enables it.',
  );

export type StaticKeyConfig = z.output<typeof staticKeyConfigSchema>;
