// A replica that cannot re-read its key ring (store failing, ring missing, ring unreadable) keeps the keys it
// holds only for a bounded REAL time (LiveRing staleAfterMs, performance.now, whatever the injected clock
// says): past it, the signing key is no longer handed out (issuance answers 503), so nothing it signs can
// outlive the publication of a key another replica has since rotated out and dropped. The e2e suite
// (test/e2e/rotation-attacks.e2e.test.ts) cannot wait the configured minimum (61 s); this file uses a short
// bound on the ring itself.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { configSchema, type WritConfigInput } from '../../../src/config/schema.ts';
import { WritError } from '../../../src/errors.ts';
import { ensureRing, LiveRing, type RingDoc, readRing } from '../../../src/keys/key-ring.ts';
import { generateJwtKeyPem, retainSeconds, ringSpec, ringTiming } from '../../../src/keys/rotation.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { waitFor } from '../../helpers/wait.ts';

const logger = pino({ level: 'silent' });
const STALE_AFTER_MS = 1_000;

type Failure = 'store down' | 'ring missing' | 'ring unreadable';

/** A MemoryStore whose key material reads can be made to fail, to find nothing, or to find garbage. */
class FlakyStore extends MemoryStore {
  failure: Failure | undefined;

  override async getKeyMaterial(name: string): Promise<string | null> {
    if (this.failure === 'store down') throw new WritError('ERR_STORE_UNAVAILABLE', 'redis is down');
    if (this.failure === 'ring missing') return null;
    if (this.failure === 'ring unreadable') return '{"v":1,';
    return super.getKeyMaterial(name);
  }
}

async function setup() {
  const clock = new FakeClock();
  const store = new FlakyStore({ clock: clock.clock });
  const config = configSchema.parse({ trustDomain: 'example.org' });
  const spec = ringSpec({ store, clock: clock.clock, config }, 'jwt');
  const ring = await LiveRing.open<string>({
    spec,
    decode: async (slot) => slot.pem,
    logger,
    refreshMs: 0,
    staleAfterMs: STALE_AFTER_MS,
  });
  return { clock, store, spec, ring };
}

/** What current() throws, or undefined while it still hands out a key. */
function currentError(ring: LiveRing<string>): unknown {
  try {
    ring.current();
    return undefined;
  } catch (e) {
    return e;
  }
}

describe('a key ring that cannot be re-read', () => {
  for (const failure of ['store down', 'ring missing', 'ring unreadable'] as const) {
    it(`${failure}: stops handing out the signing key once the ring is stale, and resumes after a good read`, async () => {
      const { clock, store, spec, ring } = await setup();
      const held = ring.current();
      const published = ring.published();
      store.failure = failure;
      expect(await ring.refresh()).toBe(false);
      // The keys held stay published (verification and the JWKS go on).
      expect(ring.published()).toEqual(published);
      // The injected clock is not what bounds it (it may be faked, or wrong): real time is.
      clock.advance(3_600_000);
      const error = await waitFor(
        async () => {
          await ring.refresh();
          return currentError(ring);
        },
        { what: 'the signing key to be withheld', timeoutMs: 4_000, intervalMs: 50 },
      );
      expect(error).toBeInstanceOf(WritError);
      expect((error as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
      expect((error as WritError).status).toBe(503);
      expect(ring.published()).toEqual(published);

      store.failure = undefined;
      await ring.refresh();
      expect(ring.current()).toBe(held);
      expect((await readRing(store, spec.name))?.doc.current.pem).toBe(held);
      ring.close();
    });
  }

  it('follows a recreated ring after the ring went missing, even with a lower sequence', async () => {
    const { clock, store, spec, ring } = await setup();
    const held = ring.current();
    const sequence = ring.sequence;
    const stored = await readRing(store, spec.name);
    if (!stored) throw new Error('no ring');
    store.failure = 'ring missing';
    expect(await ring.refresh()).toBe(false);
    expect(ring.current()).toBe(held);
    // Redis lost the ring and a writer recreated it: new keys, and a sequence below the one held (here the
    // counter was lost and the recreating writer's clock is behind).
    const now = clock.seconds();
    const recreated: RingDoc = {
      v: 1,
      sequence: 1,
      current: { pem: generateJwtKeyPem('ES256'), createdAt: now, activatedAt: now },
      next: { pem: generateJwtKeyPem('ES256'), createdAt: now },
      retired: [],
    };
    expect(await store.swapKeyMaterial(spec.name, stored.raw, JSON.stringify(recreated))).toBe(true);
    store.failure = undefined;
    expect(await ring.refresh()).toBe(true);
    expect(ring.current()).toBe(recreated.current.pem);
    expect(ring.current()).not.toBe(held);
    expect(ring.published()).toEqual([recreated.current.pem, recreated.next.pem]);
    expect(ring.sequence).toBeLessThan(sequence);
    // And a ring the store creates anew (ensureRing, another replica) is never the one this replica held.
    expect((await ensureRing(spec)).doc.current.pem).toBe(recreated.current.pem);
    ring.close();
  });

  it('is configured so that nothing signed while stale outlives the retention of a key rotated out', () => {
    const inputs: WritConfigInput[] = [
      {},
      { credentials: { backdate: 0 }, keys: { rotation: { refreshInterval: 1 } } },
      {
        credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300, backdate: 300 },
        keys: { rotation: { refreshInterval: 3600 } },
      },
    ];
    for (const input of inputs) {
      const config = configSchema.parse(input);
      const { refreshMs, staleAfterMs } = ringTiming(config);
      expect(refreshMs).toBe(config.keys.rotation.refreshInterval * 1000);
      expect(staleAfterMs).toBeGreaterThan(refreshMs);
      // A token signed at the last moment lives maxTtl; the key stays published retainSeconds after it is
      // rotated out, which may be right after this replica's last good read.
      expect(staleAfterMs / 1000 + config.credentials.maxTtl).toBeLessThanOrEqual(retainSeconds(config));
    }
  });
});
