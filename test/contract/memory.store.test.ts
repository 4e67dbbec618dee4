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

  it('uses the system clock by default', async () => {
    const store = new MemoryStore({});
    const before = Math.floor(Date.now() / 1000);
    const entry = await store.createEntry({ spiffeId: 'spiffe://example.org/a', selectors: [] });
    expect(entry.createdAt).toBeGreaterThanOrEqual(before);
    expect(entry.createdAt).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });
});
