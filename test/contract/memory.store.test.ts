// Runs the CredentialStore contract against the in-memory adapter, plus its memory bound.
import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { FakeClock } from '../helpers/clock.ts';
import { CONTRACT_RETENTION_SECONDS, credentialStoreContract } from './credential-store.contract.ts';

credentialStoreContract(
  'memory',
  async (fake) => new MemoryStore({ clock: fake.clock, retentionSeconds: CONTRACT_RETENTION_SECONDS }),
);

describe('MemoryStore', () => {
  it('sweeps dropped records on writes, so memory stays bounded', async () => {
    const fake = new FakeClock();
    const store = new MemoryStore({ clock: fake.clock, retentionSeconds: 10 });
    const record = (i: number) => {
      const now = fake.seconds();
      return store.recordIssuance(
        {
          id: `c${i}`,
          type: 'jwt',
          spiffeId: 'spiffe://example.org/w',
          task: `t${i}`,
          attestor: 'join_token',
          audience: ['a'],
          issuedAt: now,
          expiresAt: now + 5,
          kid: 'k',
        },
        { id: `t${i}`, owner: 'spiffe://example.org/w', origin: 'generated', deadline: now + 5 },
      );
    };
    for (let i = 0; i < 5000; i++) {
      await record(i);
      await store.putJoinToken(`h${i}`, {
        spiffeId: 'spiffe://example.org/n',
        createdAt: 0,
        expiresAt: fake.seconds() + 5,
      });
      fake.advance(1000);
    }
    // Live at any moment: about 15 tasks (5 s deadline + 10 s retention) and 5 join tokens.
    const size = store.size();
    expect(size.tasks).toBeLessThan(100);
    expect(size.credentials).toBeLessThan(100);
    expect(size.joinTokens).toBeLessThan(100);
  });

  it('numbers feed events as a Redis stream would: clock ms, a sequence within one ms, never backwards', async () => {
    const fake = new FakeClock(1_700_000_000_000);
    const store = new MemoryStore({ clock: fake.clock });
    const now = fake.seconds();
    for (let i = 0; i < 4; i++) {
      await store.recordIssuance(
        {
          id: `c${i}`,
          type: 'jwt',
          spiffeId: 'spiffe://example.org/w',
          task: 't',
          attestor: 'join_token',
          audience: [],
          issuedAt: now,
          expiresAt: now + 300,
          kid: 'k',
        },
        { id: 't', owner: 'spiffe://example.org/w', origin: 'generated', deadline: now + 600 },
      );
    }
    await store.revokeCredential('c0', 'admin', now);
    await store.revokeCredential('c1', 'admin', now);
    fake.advance(5);
    await store.revokeCredential('c2', 'admin', now);
    fake.advance(-1000); // a clock stepped back
    await store.revokeCredential('c3', 'admin', now);
    const ids = (await store.readRevocations(undefined, 10)).map((e) => e.id);
    expect(ids).toEqual(['1700000000000-0', '1700000000000-1', '1700000000005-0', '1700000000005-1']);
    expect(await store.lastRevocationId()).toBe('1700000000005-1');
  });

  it('uses the system clock by default', async () => {
    const store = new MemoryStore({});
    const before = Math.floor(Date.now() / 1000);
    const entry = await store.createEntry({ spiffeId: 'spiffe://example.org/a', selectors: [] });
    expect(entry.createdAt).toBeGreaterThanOrEqual(before);
    expect(entry.createdAt).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });
});
