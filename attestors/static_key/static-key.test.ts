// static_key attestor, without HTTP: configuration checks, result shape, and the legacy set in step.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AttestationError, type AttestorHost } from '../../src/attestation/types.ts';
import { configSchema } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { LEGACY_ATTESTORS, OPTIONAL_PLUGINS } from '../plugins.ts';
import { digestBytes, staticKeyConfigSchema } from './config.ts';
import { hashStaticKey, staticKeyPlugin } from './index.ts';

const host: AttestorHost = {
  store: new MemoryStore(),
  clock: Date.now,
  logger: createLogger('silent'),
  trustDomain: 'writ.local',
};
const ctx = { signal: new AbortController().signal };
const hex = (k: string) => createHash('sha256').update(k).digest('hex');

describe('static_key attestor', () => {
  it('hashes like `printf %s "$KEY" | sha256sum`, and accepts hex or base64url digests', () => {
    // sha256("abc"), the FIPS 180-2 test vector.
    const abc = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
    expect(hashStaticKey('abc').toString('hex')).toBe(abc);
    expect(digestBytes(abc)?.toString('hex')).toBe(abc);
    expect(digestBytes(abc.toUpperCase())?.toString('hex')).toBe(abc);
    expect(digestBytes(Buffer.from(abc, 'hex').toString('base64url'))?.toString('hex')).toBe(abc);
    expect(digestBytes(abc.slice(1))).toBeUndefined();
    expect(digestBytes(Buffer.from(abc, 'hex').toString('base64'))).toBeUndefined();
  });

  it('returns the id and configured selectors, posture legacy and the lower TTL cap', async () => {
    const config = staticKeyConfigSchema.parse({
      ttlCap: 240,
      keys: [
        { id: 'a', sha256: hex('key-a'), selectors: { env: 'prod', region: 'eu-west-1' } },
        { id: 'b', sha256: hex('key-b'), ttlCap: 30 },
        { id: 'c', sha256: hex('key-c'), ttlCap: 9999 },
      ],
    });
    const attestor = staticKeyPlugin.create(config, host);
    expect(attestor).toMatchObject({ name: 'static_key', legacy: true });
    expect(await attestor.attest({ key: 'key-a' }, ctx)).toEqual({
      selectors: ['static_key:id:a', 'static_key:env:prod', 'static_key:region:eu-west-1'],
      posture: { legacy: true },
      ttlCap: 240,
    });
    expect((await attestor.attest({ key: 'key-b' }, ctx)).ttlCap).toBe(30);
    expect((await attestor.attest({ key: 'key-c' }, ctx)).ttlCap).toBe(240);
    await expect(attestor.attest({ key: 'key-d' }, ctx)).rejects.toBeInstanceOf(AttestationError);
    await expect(attestor.attest({ key: '' }, ctx)).rejects.toBeInstanceOf(AttestationError);
  });

  it('defaults the cap to 300 s', () => {
    expect(staticKeyConfigSchema.parse({ keys: [{ id: 'a', sha256: hex('a') }] }).ttlCap).toBe(300);
  });

  it('lists every configuration problem with its path', () => {
    const r = configSchema.safeParse({
      attestors: {
        static_key: {
          keys: [
            { id: 'a', sha256: hex('x'), selectors: { id: 'other', 'bad key': 'v', ok: ' padded ' } },
            { id: 'a', sha256: hex('x') },
            { id: 'b', sha256: 'not-a-digest', key: 'plaintext' },
          ],
        },
      },
    });
    expect(r.success).toBe(false);
    const problems = r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^attestors\.static_key\.keys\.0\.selectors\.bad key: /),
        'attestors.static_key.keys.2.sha256: must be a SHA-256 digest in hex (64) or base64url (43)',
        expect.stringMatching(/^attestors\.static_key\.keys\.2: .*key/),
      ]),
    );
    const ok = configSchema.safeParse({ attestors: { static_key: { keys: [] } } });
    expect(ok.success).toBe(false);
    const refined = configSchema.safeParse({
      attestors: {
        static_key: {
          keys: [
            { id: 'a', sha256: hex('x'), selectors: { id: 'other', ok: ' padded ' } },
            { id: 'a', sha256: Buffer.from(hex('x'), 'hex').toString('base64url') },
          ],
        },
      },
    });
    const refinedProblems = refined.success
      ? []
      : refined.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(refinedProblems.sort()).toEqual(
      [
        'attestors.static_key.keys.0.selectors.id: "id" is reserved',
        'attestors.static_key.keys.0.selectors.ok: not a valid selector value',
        'attestors.static_key.keys.1.id: duplicate id',
        'attestors.static_key.keys.1.sha256: the same key is listed twice',
      ].sort(),
    );
  });

  it('is in LEGACY_ATTESTORS, the set the issuance route logs and counts, and the only one there', () => {
    const attestor = staticKeyPlugin.create(
      staticKeyConfigSchema.parse({ keys: [{ id: 'a', sha256: hex('a') }] }),
      host,
    );
    expect(attestor.legacy).toBe(true);
    expect(OPTIONAL_PLUGINS).toContain(staticKeyPlugin);
    expect([...LEGACY_ATTESTORS]).toEqual(['static_key']);
  });
});
