// Attacks on key rotation at the ring level (real MemoryStore, real key generation, a FakeClock): scheduled
// rotations outrunning the retired-key cap, a CA rotation that promotes a CA as old as the one it replaces, and
// the "this replica uses the new keys at once" promise when a periodic re-read is in flight.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { configSchema, type WritConfigInput } from '../../../src/config/schema.ts';
import { ensureRing, LiveRing, type RingSlot, readRing } from '../../../src/keys/key-ring.ts';
import { RotationTooSoonError, ringSpec, rotateDue, rotateNow } from '../../../src/keys/rotation.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import type { CredentialStore } from '../../../src/store/types.ts';
import { FakeClock } from '../../helpers/clock.ts';

const logger = pino({ level: 'silent' });

function setup(input: WritConfigInput = {}) {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock: clock.clock });
  const config = configSchema.parse({ trustDomain: 'example.org', ...input });
  return { clock, store, config, deps: { store, clock: clock.clock, logger, config } };
}

const slotsOf = (doc: { current: RingSlot; next: RingSlot; retired: RingSlot[] }) => [
  doc.current,
  doc.next,
  ...doc.retired,
];

describe('rotation attacks (ring level)', () => {
  it('keeps every retired key published until its retention ends, however often the schedule rotates', async () => {
    // A schedule that would need more retired keys than a ring holds is refused by the config...
    expect(() =>
      configSchema.parse({
        credentials: { maxTtl: 3600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
        keys: { bundleRefreshHint: 1, rotation: { jwtInterval: 30, refreshInterval: 1, checkInterval: 1 } },
      }),
    ).toThrow(/jwtInterval/);
    // ...and rotations on demand that would push out a retired key still in use are refused, not truncated.
    const { deps, clock } = setup({
      credentials: { maxTtl: 3600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
      keys: { bundleRefreshHint: 1, rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 1 } },
    });
    const spec = ringSpec(deps, 'jwt');
    const first = (await ensureRing(spec)).doc.current;
    for (let i = 0; i < 64; i++) {
      clock.advance(3_000);
      expect((await rotateNow(deps, 'jwt')).rotated).toBe(true);
    }
    clock.advance(3_000);
    await expect(rotateNow(deps, 'jwt')).rejects.toBeInstanceOf(RotationTooSoonError);
    const ring = await readRing(deps.store, spec.name);
    expect(ring?.doc.retired).toHaveLength(64);
    const published = ring ? slotsOf(ring.doc).some((s) => s.pem === first.pem) : false;
    expect(published, 'the first key retired is still published').toBe(true);
  });

  it('after a rotation because the CA is expiring, the CA that issues has at least 2 x maxTtl of life left', async () => {
    // On-demand CA rotation (caInterval 0): the ring's current and next CA are generated together, with the
    // same lifetime, so both end at the same moment.
    const { deps, clock, config } = setup({
      credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
      keys: { x509: { caTtl: 4000 }, rotation: { jwtInterval: 0, caInterval: 0 } },
    });
    const spec = ringSpec(deps, 'x509');
    const created = await ensureRing(spec);
    const end = created.doc.current.notAfter ?? 0;
    expect(created.doc.next.notAfter).toBe(end);
    // 1100 s of life left (< 2 x maxTtl + publication lead): due for a rotation, but the next CA ends at the
    // same moment, so a fresh next CA is published first...
    clock.set((end - 1100) * 1000);
    const first = (await rotateDue(deps)).find((r) => r.ring === 'x509');
    expect(first).toMatchObject({ rotated: false, reason: 'next_ca_expiring' });
    // ...and takes over once it has been published for a bundle refresh.
    clock.advance(311_000);
    const results = await rotateDue(deps);
    const x509 = results.find((r) => r.ring === 'x509');
    expect(x509).toMatchObject({ rotated: true, reason: 'ca_expiring' });
    const after = await readRing(deps.store, spec.name);
    const left = (after?.doc.current.notAfter ?? 0) - clock.seconds();
    expect(left).toBeGreaterThanOrEqual(2 * config.credentials.maxTtl);
  });

  it('a refresh asked for after a rotation sees that rotation, even while a periodic re-read is in flight', async () => {
    const { deps, store, clock } = setup({ keys: { rotation: { jwtInterval: 0, caInterval: 0 } } });
    // The replica's view of the store: reads that were made before the rotation may answer after it.
    let hold: Promise<void> | undefined;
    let readMade: () => void = () => {};
    const slow = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'getKeyMaterial') {
          return async (name: string) => {
            const value = await target.getKeyMaterial(name);
            if (hold) {
              readMade();
              await hold;
            }
            return value;
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as CredentialStore;
    const spec = { ...ringSpec(deps, 'jwt'), store: slow };
    const ring = await LiveRing.open<string>({
      spec,
      decode: async (slot) => slot.pem,
      logger,
      refreshMs: 0,
    });
    const before = ring.current();
    let release: () => void = () => {};
    hold = new Promise<void>((r) => {
      release = r;
    });
    const read = new Promise<void>((r) => {
      readMade = r;
    });
    // The periodic re-read starts (and reads the ring as it is now)...
    const tick = ring.refresh();
    await read;
    // ...an admin rotation is written meanwhile (the next key published long enough), then the route refreshes "so that this replica uses the new
    // keys at once" (keys.routes.ts).
    clock.advance(311_000);
    await rotateNow(deps, 'jwt');
    const afterRotation = (await readRing(store, spec.name))?.doc.current.pem;
    expect(afterRotation).not.toBe(before);
    const asked = ring.refresh();
    hold = undefined;
    release();
    await Promise.all([tick, asked]);
    expect(ring.current() === afterRotation, 'the replica holds the ring it just wrote').toBe(true);
  });
});
