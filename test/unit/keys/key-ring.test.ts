// Key rings in the store: creation, compare-and-set rotation, retention, pruning and when a ring is due.
import { generateKeyPairSync } from 'node:crypto';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { configSchema, type WritConfigInput } from '../../../src/config/schema.ts';
import { ensureRing, LiveRing, readRing } from '../../../src/keys/key-ring.ts';
import {
  dueReason,
  jwtLegacyName,
  retainSeconds,
  ringSpec,
  rotateDue,
  rotateNow,
} from '../../../src/keys/rotation.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import { FakeClock } from '../../helpers/clock.ts';

const logger = pino({ level: 'silent' });

function setup(input: WritConfigInput = {}) {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock: clock.clock });
  const config = configSchema.parse({ trustDomain: 'example.org', ...input });
  return { clock, store, config, deps: { store, clock: clock.clock, logger, config } };
}

describe('key rings', () => {
  it('creates current and next once, whoever asks first', async () => {
    const { deps } = setup();
    const [a, b] = await Promise.all([ensureRing(ringSpec(deps, 'jwt')), ensureRing(ringSpec(deps, 'jwt'))]);
    expect(a.raw).toBe(b.raw);
    expect(a.doc.current.pem).not.toBe(a.doc.next.pem);
    expect(a.doc.retired).toEqual([]);
    expect(a.doc.sequence).toBeGreaterThanOrEqual(1);
  });

  it('adopts a key stored before rings existed as the current key', async () => {
    const { deps, store } = setup();
    const legacy = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    await store.putKeyMaterialIfAbsent(jwtLegacyName('ES256'), legacy);
    const ring = await ensureRing(ringSpec(deps, 'jwt'));
    expect(ring.doc.current.pem).toBe(legacy);
    expect(ring.doc.next.pem).not.toBe(legacy);
  });

  it('retires the current key once when two rotations of the same key race', async () => {
    const { deps, clock } = setup();
    const before = await ensureRing(ringSpec(deps, 'jwt'));
    clock.advance(311_000); // the next key has been published for a bundle refresh
    const results = await Promise.all([rotateNow(deps, 'jwt'), rotateNow(deps, 'jwt')]);
    expect(results.every((r) => r.rotated)).toBe(true);
    const after = await readRing(deps.store, ringSpec(deps, 'jwt').name);
    expect(after?.doc.current.pem).toBe(before.doc.next.pem);
    expect(after?.doc.retired.map((s) => s.pem)).toEqual([before.doc.current.pem]);
    expect(after?.doc.sequence).toBeGreaterThan(before.doc.sequence);
  });

  it('keeps a retired key until everything it signed has expired, then drops it', async () => {
    const { deps, clock, config } = setup({ credentials: { maxTtl: 600, x509DefaultTtl: 600 } });
    await ensureRing(ringSpec(deps, 'jwt'));
    clock.advance(311_000);
    await rotateNow(deps, 'jwt');
    const ring = await readRing(deps.store, ringSpec(deps, 'jwt').name);
    const retired = ring?.doc.retired[0];
    // maxTtl + backdate + one ring refresh + clock margin
    expect(retainSeconds(config)).toBe(600 + 5 + 10 + 60);
    expect(retired?.retainUntil).toBe(clock.seconds() + retainSeconds(config));
    clock.advance((retainSeconds(config) - 1) * 1000);
    expect((await rotateDue(deps)).find((r) => r.ring === 'jwt')?.pruned).toBe(0);
    clock.advance(1000);
    const [jwt] = await rotateDue(deps);
    expect(jwt).toMatchObject({ ring: 'jwt', rotated: false, pruned: 1 });
    expect((await readRing(deps.store, ringSpec(deps, 'jwt').name))?.doc.retired).toEqual([]);
  });

  it('rotates on schedule only after the next key was published for a bundle refresh', async () => {
    const { config, clock } = setup({
      keys: { bundleRefreshHint: 300, rotation: { jwtInterval: 3600, refreshInterval: 10 } },
    });
    const now = clock.seconds();
    const doc = {
      v: 1 as const,
      sequence: 1,
      current: { pem: 'a', createdAt: now, activatedAt: now },
      next: { pem: 'b', createdAt: now },
      retired: [],
    };
    expect(dueReason(config, 'jwt', doc, now + 3599)).toBeUndefined();
    expect(dueReason(config, 'jwt', doc, now + 3600)).toBe('interval');
    // a next key published a moment ago (an admin rotation just made it) waits for the caches
    const fresh = { ...doc, next: { pem: 'c', createdAt: now + 3500 } };
    expect(dueReason(config, 'jwt', fresh, now + 3600)).toBeUndefined();
    expect(dueReason(config, 'jwt', fresh, now + 3500 + 311)).toBe('interval');
    // a CA close to its end rotates whatever the interval
    const ca = { ...doc, current: { ...doc.current, notAfter: now + 2 * 86_400 - 1 } };
    expect(
      dueReason(configSchema.parse({ keys: { rotation: { caInterval: 0 } } }), 'x509', ca, now + 400),
    ).toBe('ca_expiring');
  });

  it('leaves out a stored next key that cannot be used, but refuses a ring whose current key cannot', async () => {
    const { deps, store } = setup();
    const spec = ringSpec(deps, 'jwt');
    const good = await ensureRing(spec);
    const broken = { ...good.doc, next: { pem: 'not a key', createdAt: 1 } };
    expect(await store.swapKeyMaterial(spec.name, good.raw, JSON.stringify(broken))).toBe(true);
    const decode = async (slot: { pem: string }) => {
      if (!slot.pem.includes('PRIVATE KEY')) throw new Error('unusable');
      return slot.pem;
    };
    const ring = await LiveRing.open({ spec, decode, logger, refreshMs: 0 });
    expect(ring.members().map((m) => m.state)).toEqual(['current']);
    const raw = JSON.stringify(broken);
    expect(
      await store.swapKeyMaterial(
        spec.name,
        raw,
        JSON.stringify({ ...broken, current: broken.next, sequence: 99 }),
      ),
    ).toBe(true);
    // the refresh fails closed to the keys held
    expect(await ring.refresh()).toBe(false);
    expect(ring.current()).toBe(good.doc.current.pem);
    await expect(LiveRing.open({ spec, decode, logger, refreshMs: 0 })).rejects.toThrow(/unusable/);
  });

  it('refuses a schedule that would sign with a key relying parties may not have yet', () => {
    expect(() =>
      configSchema.parse({ keys: { bundleRefreshHint: 300, rotation: { jwtInterval: 300 } } }),
    ).toThrow(/jwtInterval/);
    expect(() =>
      configSchema.parse({ keys: { x509: { caTtl: 86_400 * 30 }, rotation: { caInterval: 86_400 * 30 } } }),
    ).toThrow(/caTtl/);
    expect(
      configSchema.parse({ keys: { rotation: { jwtInterval: 0, caInterval: 0 } } }).keys.rotation,
    ).toMatchObject({
      jwtInterval: 0,
      caInterval: 0,
    });
  });
});
