// The CredentialStore contract: one behaviour suite that every adapter (memory, Redis) runs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WritError } from '../../src/errors.ts';
import { credentialStatus } from '../../src/store/status.ts';
import type {
  CredentialFilter,
  CredentialRecord,
  CredentialStore,
  JoinTokenRecord,
  Page,
  RegistrationEntryInput,
  RevocationEvent,
  TaskInit,
  TaskRecord,
} from '../../src/store/types.ts';
import { FakeClock } from '../helpers/clock.ts';

/** Adapters under this suite must be created with this retention. */
export const CONTRACT_RETENTION_SECONDS = 60;

const OWNER = 'spiffe://example.org/ci/build';
const OTHER = 'spiffe://example.org/ci/deploy';

/**
 * @param makeStore a fresh, empty store
 * @param reopen a second store over the same data, as a restarted process would open it (the memory store,
 *   whose data lives in the process, passes the same instance)
 */
export function credentialStoreContract(
  name: string,
  makeStore: (clock: FakeClock) => Promise<CredentialStore>,
  reopen: (store: CredentialStore, clock: FakeClock) => Promise<CredentialStore> = async (store) => store,
): void {
  describe(`CredentialStore contract: ${name}`, () => {
    let fake: FakeClock;
    let store: CredentialStore;
    let now: number;

    beforeEach(async () => {
      fake = new FakeClock();
      now = fake.seconds();
      store = await makeStore(fake);
    });

    afterEach(async () => {
      await store.close();
    });

    const expectWritError = async (promise: Promise<unknown>, code: string) => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(WritError);
      expect((error as WritError).code).toBe(code);
    };

    const credential = (id: string, overrides: Partial<CredentialRecord> = {}): CredentialRecord => ({
      id,
      type: 'jwt',
      spiffeId: OWNER,
      task: 'task-1',
      attestor: 'github_actions',
      audience: ['https://api.example.org', 'sts.amazonaws.com'],
      issuedAt: now,
      expiresAt: now + 300,
      kid: 'key-2024-01',
      ...overrides,
    });

    const taskInit = (overrides: Partial<TaskInit> = {}): TaskInit => ({
      id: 'task-1',
      owner: OWNER,
      origin: 'caller',
      deadline: now + 3600,
      ...overrides,
    });

    describe('registration entries', () => {
      const input: RegistrationEntryInput = {
        spiffeId: 'spiffe://example.org/ci/build',
        selectors: ['github_actions:repository:acme/app', 'github_actions:ref:refs/heads/main'],
        audiences: ['sts.amazonaws.com'],
        jwtTtl: 300,
      };

      it('creates an entry with an id and timestamps, then reads and lists it', async () => {
        const entry = await store.createEntry(input);
        expect(entry).toEqual({ ...input, id: entry.id, createdAt: now, updatedAt: now });
        expect(entry.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(await store.getEntry(entry.id)).toEqual(entry);
        expect(await store.listEntries()).toEqual([entry]);
      });

      it('keeps only the fields given', async () => {
        const entry = await store.createEntry({
          spiffeId: 'spiffe://example.org/a',
          selectors: ['k8s:ns:default'],
        });
        expect(Object.keys(entry).sort()).toEqual(['createdAt', 'id', 'selectors', 'spiffeId', 'updatedAt']);
        const read = await store.getEntry(entry.id);
        expect(read === null ? [] : Object.keys(read).sort()).toEqual(Object.keys(entry).sort());
      });

      it('returns copies: changing a returned entry does not change the stored one', async () => {
        const entry = await store.createEntry(input);
        entry.selectors.push('x:y:z');
        expect((await store.getEntry(entry.id))?.selectors).toEqual(input.selectors);
      });

      it('lists every entry', async () => {
        const a = await store.createEntry(input);
        fake.advance(1000);
        const b = await store.createEntry({ ...input, spiffeId: 'spiffe://example.org/other' });
        expect(await store.listEntries()).toEqual([a, b]);
      });

      it('refuses a duplicate: same SPIFFE ID and same set of selectors, in any order', async () => {
        await store.createEntry(input);
        await expectWritError(store.createEntry(input), 'ERR_ENTRY_CONFLICT');
        const reordered = { spiffeId: input.spiffeId, selectors: [...input.selectors].reverse() };
        await expectWritError(store.createEntry(reordered), 'ERR_ENTRY_CONFLICT');
        const repeated = { spiffeId: input.spiffeId, selectors: [...input.selectors, ...input.selectors] };
        await expectWritError(store.createEntry(repeated), 'ERR_ENTRY_CONFLICT');
        expect(await store.listEntries()).toHaveLength(1);
      });

      it('accepts the same selectors for another SPIFFE ID, and a subset or superset of selectors', async () => {
        await store.createEntry(input);
        await store.createEntry({ ...input, spiffeId: 'spiffe://example.org/other' });
        await store.createEntry({ ...input, selectors: [input.selectors[0]!] });
        await store.createEntry({ ...input, selectors: [...input.selectors, 'github_actions:actor:alice'] });
        expect(await store.listEntries()).toHaveLength(4);
      });

      it('creates at most one of several identical concurrent entries', async () => {
        const results = await Promise.allSettled(Array.from({ length: 8 }, () => store.createEntry(input)));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) {
          if (r.status === 'rejected') expect((r.reason as WritError).code).toBe('ERR_ENTRY_CONFLICT');
        }
        expect(await store.listEntries()).toHaveLength(1);
      });

      it('replaces the fields of an entry, keeping its id and createdAt', async () => {
        const entry = await store.createEntry(input);
        fake.advance(5000);
        const replacement = {
          spiffeId: input.spiffeId,
          selectors: ['github_actions:repository:acme/app'],
          x509Ttl: 900,
        };
        const updated = await store.updateEntry(entry.id, replacement);
        const expected = { ...replacement, id: entry.id, createdAt: now, updatedAt: now + 5 };
        expect(updated).toEqual(expected);
        expect(await store.getEntry(entry.id)).toEqual(expected);
        expect((await store.getEntry(entry.id))?.audiences).toBeUndefined();
      });

      it('updates an entry with its own selectors (no conflict with itself)', async () => {
        const entry = await store.createEntry(input);
        const updated = await store.updateEntry(entry.id, { ...input, jwtTtl: 60 });
        expect(updated?.jwtTtl).toBe(60);
      });

      it('refuses an update that would duplicate another entry', async () => {
        await store.createEntry(input);
        const other = await store.createEntry({ ...input, spiffeId: 'spiffe://example.org/other' });
        await expectWritError(store.updateEntry(other.id, input), 'ERR_ENTRY_CONFLICT');
        expect((await store.getEntry(other.id))?.spiffeId).toBe('spiffe://example.org/other');
      });

      it('does not bring back an entry deleted while it was being updated', async () => {
        const entry = await store.createEntry(input);
        await Promise.all([
          store.updateEntry(entry.id, { ...input, jwtTtl: 60 }),
          store.deleteEntry(entry.id),
        ]);
        expect(await store.getEntry(entry.id)).toBeNull();
        expect(await store.listEntries()).toEqual([]);
      });

      it('answers null when updating an entry that does not exist', async () => {
        expect(await store.updateEntry('00000000-0000-4000-8000-000000000000', input)).toBeNull();
        expect(await store.listEntries()).toEqual([]);
      });

      it('deletes an entry once', async () => {
        const entry = await store.createEntry(input);
        expect(await store.deleteEntry(entry.id)).toBe(true);
        expect(await store.deleteEntry(entry.id)).toBe(false);
        expect(await store.getEntry(entry.id)).toBeNull();
        expect(await store.listEntries()).toEqual([]);
        // the same entry can then be created again
        await store.createEntry(input);
      });

      it('answers null for an unknown entry id', async () => {
        expect(await store.getEntry('nope')).toBeNull();
      });
    });

    describe('join tokens', () => {
      const token = (): JoinTokenRecord => ({
        spiffeId: 'spiffe://example.org/node/1',
        task: 'provision-42',
        createdAt: now,
        expiresAt: now + 600,
      });

      it('is consumed once', async () => {
        await store.putJoinToken('hash-a', token());
        expect(await store.consumeJoinToken('hash-a')).toEqual(token());
        expect(await store.consumeJoinToken('hash-a')).toBeNull();
      });

      it('round-trips a token without a task', async () => {
        const { task: _task, ...record } = token();
        await store.putJoinToken('hash-b', record);
        expect(await store.consumeJoinToken('hash-b')).toEqual(record);
      });

      it('reads as null once expired', async () => {
        await store.putJoinToken('hash-a', token());
        fake.advance(599_000);
        await store.putJoinToken('hash-b', token());
        expect(await store.consumeJoinToken('hash-b')).not.toBeNull();
        fake.advance(1000);
        expect(await store.consumeJoinToken('hash-a')).toBeNull();
      });

      it('lets exactly one of ten concurrent consumers have it', async () => {
        await store.putJoinToken('hash-a', token());
        const results = await Promise.all(Array.from({ length: 10 }, () => store.consumeJoinToken('hash-a')));
        expect(results.filter((r) => r !== null)).toEqual([token()]);
      });

      it('answers null for an unknown token', async () => {
        expect(await store.consumeJoinToken('unknown')).toBeNull();
      });
    });

    describe('issuance records and tasks', () => {
      it('opens the task with the first credential', async () => {
        const result = await store.recordIssuance(credential('c1'), taskInit());
        const task = {
          id: 'task-1',
          owner: OWNER,
          origin: 'caller',
          createdAt: now,
          deadline: now + 3600,
          status: 'active',
        };
        expect(result).toEqual({ ok: true, created: true, task });
        expect(await store.getTask('task-1')).toEqual(task);
      });

      it('adds a second credential to the open task without changing it', async () => {
        await store.recordIssuance(credential('c1'), taskInit());
        fake.advance(10_000);
        const result = await store.recordIssuance(
          credential('c2', { type: 'x509', issuedAt: now + 10 }),
          taskInit({ deadline: now + 99_999 }),
        );
        expect(result).toMatchObject({
          ok: true,
          created: false,
          task: { createdAt: now, deadline: now + 3600 },
        });
        expect((await store.getCredential('c1'))?.credential.id).toBe('c1');
        expect((await store.getCredential('c2'))?.credential.type).toBe('x509');
      });

      it('round-trips every credential field', async () => {
        const full = credential('c-full', {
          type: 'x509',
          audience: [],
          legacy: false,
          revokedAt: now + 1,
          revokedReason: 'key compromise',
        });
        await store.recordIssuance(full, taskInit());
        expect((await store.getCredential('c-full'))?.credential).toEqual(full);
        const legacy = credential('c-legacy', { legacy: true });
        await store.recordIssuance(legacy, taskInit());
        expect((await store.getCredential('c-legacy', 'task-1'))?.credential).toEqual(legacy);
      });

      it('keeps the first record when the same credential is recorded again', async () => {
        const first = credential('c1', { revokedAt: now, revokedReason: 'admin' });
        await store.recordIssuance(first, taskInit());
        const again = await store.recordIssuance(
          credential('c1', { kid: 'other-key', audience: ['x'] }),
          taskInit(),
        );
        expect(again.ok).toBe(true);
        expect((await store.getCredential('c1'))?.credential).toEqual(first);
      });

      it('refuses another workload joining a task (task_mismatch), writing nothing', async () => {
        await store.recordIssuance(credential('c1'), taskInit());
        const result = await store.recordIssuance(
          credential('c2', { spiffeId: OTHER }),
          taskInit({ owner: OTHER, origin: 'caller' }),
        );
        expect(result).toMatchObject({ ok: false, reason: 'task_mismatch', task: { owner: OWNER } });
        expect(await store.getCredential('c2')).toBeNull();
        expect(await store.getCredential('c2', 'task-1')).toBeNull();
      });

      it('lets workloads share a task whose id both got from an attestor', async () => {
        const init = taskInit({ id: 'run-7', origin: 'attestor' });
        await store.recordIssuance(credential('c1', { task: 'run-7' }), init);
        const shared = await store.recordIssuance(credential('c2', { task: 'run-7', spiffeId: OTHER }), {
          ...init,
          owner: OTHER,
        });
        expect(shared).toMatchObject({
          ok: true,
          created: false,
          task: { owner: OWNER, origin: 'attestor' },
        });
        const claimed = await store.recordIssuance(credential('c3', { task: 'run-7', spiffeId: OTHER }), {
          ...init,
          owner: OTHER,
          origin: 'caller',
        });
        expect(claimed).toMatchObject({ ok: false, reason: 'task_mismatch' });
      });

      it('does not share a caller-named task even with an attestor-origin request', async () => {
        await store.recordIssuance(credential('c1'), taskInit({ origin: 'caller' }));
        const result = await store.recordIssuance(
          credential('c2', { spiffeId: OTHER }),
          taskInit({ owner: OTHER, origin: 'attestor' }),
        );
        expect(result).toMatchObject({ ok: false, reason: 'task_mismatch' });
      });

      it('refuses a credential that would outlive the task deadline (deadline), writing nothing', async () => {
        await store.recordIssuance(credential('c1'), taskInit({ deadline: now + 600 }));
        const late = await store.recordIssuance(credential('c2', { expiresAt: now + 601 }), taskInit());
        expect(late).toMatchObject({ ok: false, reason: 'deadline', task: { deadline: now + 600 } });
        expect(await store.getCredential('c2')).toBeNull();
        const exact = await store.recordIssuance(credential('c3', { expiresAt: now + 600 }), taskInit());
        expect(exact.ok).toBe(true);
      });

      it('does not open a task for a credential that outlives the requested deadline', async () => {
        const result = await store.recordIssuance(
          credential('c1', { expiresAt: now + 61 }),
          taskInit({ deadline: now + 60 }),
        );
        expect(result).toMatchObject({ ok: false, reason: 'deadline' });
        expect(await store.getTask('task-1')).toBeNull();
        expect(await store.getCredential('c1')).toBeNull();
      });

      it('refuses new credentials once the deadline has passed (task_ended); the task reads as expired', async () => {
        await store.recordIssuance(
          credential('c1', { expiresAt: now + 60 }),
          taskInit({ deadline: now + 60 }),
        );
        fake.advance(59_000);
        expect((await store.getTask('task-1'))?.status).toBe('active');
        fake.advance(1000);
        const result = await store.recordIssuance(
          credential('c2', { issuedAt: now + 60, expiresAt: now + 60 }),
          taskInit(),
        );
        expect(result).toMatchObject({ ok: false, reason: 'task_ended', task: { status: 'expired' } });
        expect(await store.getCredential('c2')).toBeNull();
        expect((await store.getTask('task-1'))?.status).toBe('expired');
        expect((await store.getCredential('c1'))?.task?.status).toBe('expired');
      });

      it('does not open a task whose deadline has already passed', async () => {
        const result = await store.recordIssuance(
          credential('c1', { expiresAt: now }),
          taskInit({ deadline: now }),
        );
        expect(result).toMatchObject({ ok: false, reason: 'task_ended' });
        expect(await store.getTask('task-1')).toBeNull();
      });

      it('opens a task at most once under concurrent first issuances', async () => {
        const results = await Promise.all(
          [OWNER, OTHER, 'spiffe://example.org/c', 'spiffe://example.org/d'].map((owner, i) =>
            store.recordIssuance(credential(`c${i}`, { spiffeId: owner }), taskInit({ owner })),
          ),
        );
        expect(results.filter((r) => r.ok && r.created)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reason === 'task_mismatch')).toHaveLength(3);
        const winner = results.find((r) => r.ok);
        expect((await store.getTask('task-1'))?.owner).toBe(winner?.task.owner);
      });

      it('finds a credential with and without its task', async () => {
        const c1 = credential('c1');
        await store.recordIssuance(c1, taskInit());
        const task = await store.getTask('task-1');
        expect(await store.getCredential('c1')).toEqual({ credential: c1, task });
        expect(await store.getCredential('c1', 'task-1')).toEqual({ credential: c1, task });
        expect(await store.getCredential('c1', 'task-2')).toBeNull();
      });

      it('answers null for unknown credentials and tasks', async () => {
        expect(await store.getCredential('nope')).toBeNull();
        expect(await store.getCredential('nope', 'task-1')).toBeNull();
        expect(await store.getTask('nope')).toBeNull();
      });

      it('drops a credential after its expiry plus retention, and the task after its deadline plus retention', async () => {
        await store.recordIssuance(
          credential('c1', { expiresAt: now + 300 }),
          taskInit({ deadline: now + 600 }),
        );
        fake.advance((300 + CONTRACT_RETENTION_SECONDS - 1) * 1000);
        expect(await store.getCredential('c1')).not.toBeNull();
        fake.advance(1000);
        expect(await store.getCredential('c1')).toBeNull();
        expect(await store.getCredential('c1', 'task-1')).toBeNull();
        expect((await store.getTask('task-1'))?.status).toBe('active');
        fake.advance((600 - 300) * 1000);
        expect(await store.getTask('task-1')).toBeNull();
      });

      it('rejects a credential whose task field names another task (a caller mistake)', async () => {
        await expect(store.recordIssuance(credential('c1', { task: 'task-2' }), taskInit())).rejects.toThrow(
          TypeError,
        );
        expect(await store.getTask('task-1')).toBeNull();
      });
    });

    describe('key material', () => {
      it('keeps the first value written', async () => {
        expect(await store.getKeyMaterial('signing')).toBeNull();
        expect(await store.putKeyMaterialIfAbsent('signing', 'first')).toBe('first');
        expect(await store.putKeyMaterialIfAbsent('signing', 'second')).toBe('first');
        expect(await store.getKeyMaterial('signing')).toBe('first');
      });

      it('agrees on one value among concurrent writers', async () => {
        const values = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.putKeyMaterialIfAbsent('ca', `value-${i}`)),
        );
        expect(new Set(values).size).toBe(1);
        expect(await store.getKeyMaterial('ca')).toBe(values[0]);
      });

      it('swaps a value only when it is still the one read', async () => {
        expect(await store.swapKeyMaterial('ring', 'stale', 'v1')).toBe(false);
        expect(await store.getKeyMaterial('ring')).toBeNull();
        expect(await store.swapKeyMaterial('ring', null, 'v1')).toBe(true);
        expect(await store.swapKeyMaterial('ring', null, 'v2')).toBe(false);
        expect(await store.swapKeyMaterial('ring', 'v0', 'v2')).toBe(false);
        expect(await store.getKeyMaterial('ring')).toBe('v1');
        expect(await store.swapKeyMaterial('ring', 'v1', 'v2')).toBe(true);
        expect(await store.getKeyMaterial('ring')).toBe('v2');
      });

      it('deletes a replaced value in the same step as a successful swap, and only then', async () => {
        await store.putKeyMaterialIfAbsent('legacy', 'old-key');
        expect(await store.swapKeyMaterial('ring2', 'nope', 'v1', { alsoDelete: 'legacy' })).toBe(false);
        expect(await store.getKeyMaterial('legacy')).toBe('old-key');
        expect(await store.swapKeyMaterial('ring2', null, 'v1', { alsoDelete: 'legacy' })).toBe(true);
        expect(await store.getKeyMaterial('legacy')).toBeNull();
        expect(await store.getKeyMaterial('ring2')).toBe('v1');
      });

      it('lets exactly one of concurrent swappers from the same value win', async () => {
        await store.putKeyMaterialIfAbsent('race', 'base');
        const wins = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.swapKeyMaterial('race', 'base', `next-${i}`)),
        );
        expect(wins.filter(Boolean)).toHaveLength(1);
        expect(await store.getKeyMaterial('race')).toBe(`next-${wins.indexOf(true)}`);
      });
    });

    describe('sequences', () => {
      it('counts from 1, strictly increasing, one counter per name', async () => {
        expect(await store.nextSequence('crl')).toBe(1);
        expect(await store.nextSequence('crl')).toBe(2);
        expect(await store.nextSequence('other')).toBe(1);
        expect(await store.nextSequence('crl')).toBe(3);
      });

      it('jumps to a floor and keeps increasing from there', async () => {
        expect(await store.nextSequence('bundle', 1_700_000_000_000)).toBe(1_700_000_000_000);
        expect(await store.nextSequence('bundle', 1_700_000_000_000)).toBe(1_700_000_000_001);
        expect(await store.nextSequence('bundle')).toBe(1_700_000_000_002);
        expect(await store.nextSequence('bundle', 1_800_000_000_000)).toBe(1_800_000_000_000);
        await expect(store.nextSequence('bundle', -1)).rejects.toThrow(TypeError);
        await expect(store.nextSequence('bundle', 1.5)).rejects.toThrow(TypeError);
      });

      it('never hands out one value twice under concurrent callers, and survives a reopen', async () => {
        const values = await Promise.all(Array.from({ length: 20 }, () => store.nextSequence('crl')));
        expect([...values].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        const again = await reopen(store, fake);
        try {
          expect(await again.nextSequence('crl')).toBe(21);
        } finally {
          if (again !== store) await again.close();
        }
      });

      it('refuses a malformed name', async () => {
        await expect(store.nextSequence('')).rejects.toThrow(TypeError);
        await expect(store.nextSequence('CRL number')).rejects.toThrow(TypeError);
      });
    });

    // ---- task lifecycle, revocation and the feed

    /** Records a credential (its task opened as needed) and insists that it was recorded. */
    const issue = async (c: CredentialRecord, init: Partial<TaskInit> = {}) => {
      const result = await store.recordIssuance(c, taskInit({ id: c.task, owner: c.spiffeId, ...init }));
      expect(result.ok, `recording ${c.id}`).toBe(true);
      return c;
    };

    const feed = () => store.readRevocations(undefined, 1000);
    const credentialEvents = async () => (await feed()).filter((e) => e.kind === 'credential');
    const ms = (id: string) => Number(id.split('-')[0]);

    /** Every page of a listing, following `next`. */
    const allPages = async <T>(list: (cursor: string | undefined) => Promise<Page<T>>): Promise<T[]> => {
      const items: T[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const page = await list(cursor);
        items.push(...page.items);
        if (page.next === undefined) return items;
        cursor = page.next;
      }
      throw new Error('too many pages');
    };
    const listIds = async (filter: CredentialFilter, limit = 1000) =>
      (await allPages((cursor) => store.listCredentials(filter, { cursor, limit }))).map(
        (v) => v.credential.id,
      );

    describe('ending tasks', () => {
      it('ends a task exactly once under ten concurrent calls, with one task event', async () => {
        await issue(credential('c1', { expiresAt: now + 300 }));
        await issue(credential('c2', { expiresAt: now + 900 }));
        fake.advance(5000);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            store.endTask('task-1', { status: 'completed', reason: `done_${i}`, at: now + 5 }),
          ),
        );
        const winners = results.filter((r) => r?.ended === true);
        expect(winners).toHaveLength(1);
        const reason = winners[0]?.task.endReason;
        const ended = {
          id: 'task-1',
          owner: OWNER,
          origin: 'caller',
          createdAt: now,
          deadline: now + 3600,
          status: 'completed',
          endedAt: now + 5,
          endReason: reason,
        };
        for (const r of results) expect(r?.task).toEqual(ended);
        expect(await store.getTask('task-1')).toEqual(ended);
        const events = await feed();
        expect(events).toEqual([
          {
            id: expect.stringMatching(/^\d+-\d+$/),
            kind: 'task',
            task: 'task-1',
            expiresAt: now + 900, // the last credential's expiry
            reason,
            revokedAt: now + 5,
          },
        ]);
        expect(Object.keys(events[0]!).sort()).toEqual(
          ['expiresAt', 'id', 'kind', 'reason', 'revokedAt', 'task'].sort(),
        );
      });

      it('leaves an ended task unchanged when ended again, and answers null for an unknown task', async () => {
        await issue(credential('c1'));
        const first = await store.endTask('task-1', { status: 'revoked', reason: 'admin', at: now });
        expect(first).toMatchObject({ ended: true, task: { status: 'revoked', endReason: 'admin' } });
        fake.advance(1000);
        const again = await store.endTask('task-1', { status: 'completed', reason: 'later', at: now + 1 });
        expect(again).toEqual({ ended: false, task: first?.task });
        expect(await store.getTask('task-1')).toEqual(first?.task);
        expect(await feed()).toHaveLength(1);
        expect(await store.endTask('nope', { status: 'completed', reason: 'done', at: now })).toBeNull();
      });

      it('ends a task whose deadline passed while it was still stored active (the deadline job)', async () => {
        await issue(credential('c1', { expiresAt: now + 60 }), { deadline: now + 60 });
        fake.advance(61_000);
        expect((await store.getTask('task-1'))?.status).toBe('expired');
        const result = await store.endTask('task-1', { status: 'expired', reason: 'deadline', at: now + 61 });
        expect(result).toMatchObject({ ended: true, task: { status: 'expired', endedAt: now + 61 } });
        expect(await feed()).toMatchObject([{ kind: 'task', task: 'task-1', expiresAt: now + 60 }]);
      });

      it('rejects a malformed end (a caller mistake)', async () => {
        await issue(credential('c1'));
        await expect(
          store.endTask('task-1', { status: 'completed', reason: 'Not A Code', at: now }),
        ).rejects.toThrow(TypeError);
        await expect(
          store.endTask('task-1', { status: 'active' as 'completed', reason: 'done', at: now }),
        ).rejects.toThrow(TypeError);
        expect((await store.getTask('task-1'))?.status).toBe('active');
      });

      it('makes every credential of the task read as revoked at once, and refuses new ones', async () => {
        for (const id of ['c1', 'c2', 'c3']) await issue(credential(id));
        await store.endTask('task-1', { status: 'completed', reason: 'task_done', at: now });
        for (const id of ['c1', 'c2', 'c3']) {
          const view = await store.getCredential(id);
          expect(view?.credential.revokedAt).toBeUndefined(); // no fan-out has run yet
          expect(credentialStatus(view!, now)).toBe('revoked');
        }
        expect(await listIds({ status: 'revoked' })).toEqual(['c3', 'c2', 'c1']);
        expect(await listIds({ status: 'active' })).toEqual([]);
        const refused = await store.recordIssuance(credential('c4'), taskInit());
        expect(refused).toMatchObject({ ok: false, reason: 'task_ended', task: { status: 'completed' } });
        expect(await store.getCredential('c4')).toBeNull();
        expect(await store.countTaskCredentials('task-1')).toBe(3);
      });

      it('makes the credentials of a task ended as expired read as expired', async () => {
        await issue(credential('c1'));
        await store.endTask('task-1', { status: 'expired', reason: 'deadline', at: now });
        expect(credentialStatus((await store.getCredential('c1'))!, now)).toBe('expired');
        expect(await listIds({ status: 'expired' })).toEqual(['c1']);
      });
    });

    describe('fan-out', () => {
      /** Ten credentials: c0 and c1 expired by the time the task ends, c2 revoked on its own before. */
      const tenCredentials = async () => {
        for (let i = 0; i < 10; i++)
          await issue(credential(`c${i}`, { expiresAt: now + (i < 2 ? 10 : 300) }));
        expect((await store.revokeCredential('c2', 'key_compromise', now + 1))?.revoked).toBe(true);
        fake.advance(20_000);
        const end = await store.endTask('task-1', { status: 'completed', reason: 'task_done', at: now + 20 });
        expect(end?.ended).toBe(true);
      };

      it('revokes the live credentials in batches, once each, skipping expired and revoked ones', async () => {
        await tenCredentials();
        const batches = [];
        for (let i = 0; i < 4; i++) batches.push(await store.fanOutTask('task-1', 3));
        expect(batches.map((b) => b.done)).toEqual([false, false, false, true]);
        expect(batches.reduce((sum, b) => sum + b.revoked, 0)).toBe(7);
        // idempotent once done
        expect(await store.fanOutTask('task-1', 3)).toEqual({ revoked: 0, done: true });
        expect(await store.fanOutTask('task-1', 100)).toEqual({ revoked: 0, done: true });

        const events = await credentialEvents();
        const ids = events.map((e) => e.credential);
        expect(new Set(ids).size).toBe(ids.length);
        expect([...ids].sort()).toEqual(['c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9']);
        for (const e of events.filter((e) => e.credential !== 'c2')) {
          expect(e).toEqual({
            id: expect.stringMatching(/^\d+-\d+$/),
            kind: 'credential',
            credential: e.credential,
            credentialType: 'jwt',
            task: 'task-1',
            expiresAt: now + 300,
            reason: 'task_done',
            revokedAt: now + 20,
          });
        }
        for (let i = 0; i < 10; i++) {
          const c = (await store.getCredential(`c${i}`))!.credential;
          if (i < 2) expect(c.revokedAt).toBeUndefined();
          else if (i === 2) expect(c).toMatchObject({ revokedAt: now + 1, revokedReason: 'key_compromise' });
          else expect(c).toMatchObject({ revokedAt: now + 20, revokedReason: 'task_done' });
        }
        // the feed holds no SPIFFE ID
        expect(JSON.stringify(await feed())).not.toContain('spiffe://');
        expect((await store.pendingTasks(now + 20, 10)).ending).toEqual([]);
      });

      it('resumes after a crash: a new store instance continues where the last batch stopped', async () => {
        await tenCredentials();
        // visited in expiry order: c0 and c1 (expired), c2 (revoked already), c3
        expect(await store.fanOutTask('task-1', 4)).toEqual({ revoked: 1, done: false });
        const second = await reopen(store, fake);
        try {
          // a refused issuance on the ended task (which trims nothing) does not move the cursor
          fake.advance(CONTRACT_RETENTION_SECONDS * 1000);
          expect(await second.recordIssuance(credential('c10'), taskInit())).toMatchObject({
            reason: 'task_ended',
          });
          fake.advance(-CONTRACT_RETENTION_SECONDS * 1000);
          expect(await second.fanOutTask('task-1', 4)).toEqual({ revoked: 4, done: false }); // c4..c7
          expect(await second.fanOutTask('task-1', 4)).toEqual({ revoked: 2, done: true }); // c8 c9
          expect(await second.fanOutTask('task-1', 4)).toEqual({ revoked: 0, done: true });
        } finally {
          if (second !== store) await second.close();
        }
        const ids = (await credentialEvents()).map((e) => e.credential);
        expect([...ids].sort()).toEqual(['c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9']);
      });

      it('does nothing for an active task, and is done at once for an unknown one', async () => {
        await issue(credential('c1'));
        expect(await store.fanOutTask('task-1', 10)).toEqual({ revoked: 0, done: false });
        expect((await store.getCredential('c1'))?.credential.revokedAt).toBeUndefined();
        expect(await store.fanOutTask('nope', 10)).toEqual({ revoked: 0, done: true });
        expect(await feed()).toEqual([]);
        await expect(store.fanOutTask('task-1', 0)).rejects.toThrow(TypeError);
      });

      it('revokes each credential once under concurrent fan-outs', async () => {
        await tenCredentials();
        await Promise.all(Array.from({ length: 6 }, () => store.fanOutTask('task-1', 2)));
        while (!(await store.fanOutTask('task-1', 2)).done);
        const ids = (await credentialEvents()).map((e) => e.credential);
        expect(ids).toHaveLength(8);
        expect(new Set(ids).size).toBe(8);
      });
    });

    describe('revoking one credential', () => {
      it('revokes once, with its event; a second call writes nothing', async () => {
        const c1 = await issue(credential('c1'));
        const first = await store.revokeCredential('c1', 'admin', now + 2);
        const task = await store.getTask('task-1');
        const revoked = { ...c1, revokedAt: now + 2, revokedReason: 'admin' };
        expect(first).toEqual({ revoked: true, view: { credential: revoked, task } });
        expect(await feed()).toEqual([
          {
            id: expect.stringMatching(/^\d+-\d+$/),
            kind: 'credential',
            credential: 'c1',
            credentialType: 'jwt',
            task: 'task-1',
            expiresAt: c1.expiresAt,
            reason: 'admin',
            revokedAt: now + 2,
          },
        ]);
        const again = await store.revokeCredential('c1', 'other', now + 3, 'task-1');
        expect(again).toEqual({ revoked: false, view: { credential: revoked, task } });
        expect(await feed()).toHaveLength(1);
        expect(credentialStatus(again!.view, now)).toBe('revoked');
      });

      it('does not revoke an expired credential', async () => {
        await issue(credential('c1', { expiresAt: now + 30 }));
        fake.advance(30_000);
        const result = await store.revokeCredential('c1', 'admin', now + 30);
        expect(result).toMatchObject({ revoked: false, view: { credential: { id: 'c1' } } });
        expect(result?.view.credential.revokedAt).toBeUndefined();
        expect(await feed()).toEqual([]);
      });

      it('does not revoke a credential of an ended task (the task event covers it)', async () => {
        await issue(credential('c1'));
        await store.endTask('task-1', { status: 'completed', reason: 'task_done', at: now });
        const result = await store.revokeCredential('c1', 'admin', now);
        expect(result).toMatchObject({ revoked: false, view: { task: { status: 'completed' } } });
        expect(result?.view.credential.revokedAt).toBeUndefined();
        expect(await credentialEvents()).toEqual([]);
      });

      it('answers null for an unknown credential, or one looked up in the wrong task', async () => {
        await issue(credential('c1'));
        expect(await store.revokeCredential('nope', 'admin', now)).toBeNull();
        expect(await store.revokeCredential('nope', 'admin', now, 'task-1')).toBeNull();
        expect(await store.revokeCredential('c1', 'admin', now, 'task-2')).toBeNull();
        expect(await feed()).toEqual([]);
      });

      it('lets exactly one of concurrent revocations win', async () => {
        await issue(credential('c1'));
        const results = await Promise.all(
          Array.from({ length: 8 }, () => store.revokeCredential('c1', 'admin', now)),
        );
        expect(results.filter((r) => r?.revoked)).toHaveLength(1);
        expect(await feed()).toHaveLength(1);
      });

      it('rejects a malformed reason (a caller mistake)', async () => {
        await issue(credential('c1'));
        await expect(store.revokeCredential('c1', 'has spaces', now)).rejects.toThrow(TypeError);
        expect(await feed()).toEqual([]);
      });
    });

    describe('revocation feed', () => {
      /** Five credential events, c0..c4 in order. */
      const fiveEvents = async (): Promise<RevocationEvent[]> => {
        for (let i = 0; i < 5; i++) await issue(credential(`c${i}`));
        for (let i = 0; i < 5; i++) await store.revokeCredential(`c${i}`, 'admin', now);
        const events = await feed();
        expect(events.map((e) => e.credential)).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
        return events;
      };

      it('pages oldest first, exclusive of `since`, with increasing ids', async () => {
        expect(await store.lastRevocationId()).toBe('0-0');
        expect(await feed()).toEqual([]);
        const events = await fiveEvents();
        const positions = events.map((e) => e.id.split('-').map(Number) as [number, number]);
        for (let i = 1; i < positions.length; i++) {
          const [a, b] = [positions[i - 1]!, positions[i]!];
          expect(b[0] > a[0] || (b[0] === a[0] && b[1] > a[1])).toBe(true);
        }
        const page1 = await store.readRevocations(undefined, 2);
        const page2 = await store.readRevocations(page1.at(-1)!.id, 2);
        const page3 = await store.readRevocations(page2.at(-1)!.id, 2);
        expect([page1, page2, page3].map((p) => p.length)).toEqual([2, 2, 1]);
        expect([...page1, ...page2, ...page3]).toEqual(events);
        expect(await store.readRevocations(page3.at(-1)!.id, 2)).toEqual([]);
        expect(await store.readRevocations(events[2]!.id, 10)).toEqual(events.slice(3));
        expect(await store.readRevocations('0', 10)).toEqual(events);
        expect(await store.readRevocations('0-0', 10)).toEqual(events);
        expect(await store.lastRevocationId()).toBe(events[4]!.id);
      });

      it('refuses a malformed position or limit with invalid_request', async () => {
        for (const since of ['abc', '1-', '-1', '1-2-3', '', '12', '1-x', '$']) {
          await expectWritError(store.readRevocations(since, 10), 'invalid_request');
        }
        await expectWritError(store.readRevocations(undefined, 0), 'invalid_request');
        await expectWritError(store.readRevocations(undefined, 1.5), 'invalid_request');
        expect(await store.readRevocations(undefined, 100_000)).toEqual([]);
        await expectWritError(store.waitForRevocations('abc', 10), 'invalid_request');
      });

      it('returns waiting events at once, and events appended while waiting', async () => {
        const events = await fiveEvents();
        expect(await store.waitForRevocations(events[3]!.id, 5000)).toEqual(events.slice(4));
        const since = await store.lastRevocationId();
        const started = Date.now();
        const waiting = store.waitForRevocations(since, 5000);
        await new Promise((resolve) => setTimeout(resolve, 50));
        await issue(credential('c9'));
        await store.revokeCredential('c9', 'admin', now);
        const got = await waiting;
        expect(got).toMatchObject([{ kind: 'credential', credential: 'c9' }]);
        expect(Date.now() - started).toBeLessThan(4000);
      });

      it("waits for new events only with '$'", async () => {
        await fiveEvents();
        const waiting = store.waitForRevocations('$', 5000);
        await new Promise((resolve) => setTimeout(resolve, 200)); // the blocking read is in place
        await issue(credential('c9'));
        await store.revokeCredential('c9', 'admin', now);
        expect((await waiting).map((e) => e.credential)).toEqual(['c9']);
      });

      it('returns [] when nothing comes within blockMs', async () => {
        const started = Date.now();
        expect(await store.waitForRevocations('$', 150)).toEqual([]);
        expect(Date.now() - started).toBeGreaterThanOrEqual(100);
      });

      it('returns [] at once when aborted, and waits again afterwards', async () => {
        const controller = new AbortController();
        const started = Date.now();
        const waiting = store.waitForRevocations('$', 10_000, controller.signal);
        setTimeout(() => controller.abort(), 100);
        expect(await waiting).toEqual([]);
        expect(Date.now() - started).toBeLessThan(3000);
        expect(await store.waitForRevocations('$', 10, controller.signal)).toEqual([]);
        // a later wait works
        const since = await store.lastRevocationId();
        const next = store.waitForRevocations(since, 5000);
        await issue(credential('c1'));
        await store.revokeCredential('c1', 'admin', now);
        expect((await next).map((e) => e.credential)).toEqual(['c1']);
      });

      it('drops events older than the given time', async () => {
        const events = await fiveEvents();
        const first = Math.floor(ms(events[0]!.id) / 1000);
        const last = Math.floor(ms(events[4]!.id) / 1000);
        await store.trimRevocations(first);
        expect(await feed()).toEqual(events);
        await store.trimRevocations(last + 1);
        expect(await feed()).toEqual([]);
        // later events still get later ids
        await issue(credential('c9'));
        await store.revokeCredential('c9', 'admin', now);
        const [later] = await feed();
        expect(ms(later!.id)).toBeGreaterThanOrEqual(ms(events[4]!.id));
        expect(later!.id).not.toBe(events[4]!.id);
      });
    });

    describe('listing credentials', () => {
      it('pages newest first without skipping or repeating while credentials are added', async () => {
        const originals: string[] = [];
        for (let i = 0; i < 9; i++) {
          await issue(credential(`c${i}`, { issuedAt: now + i, task: `task-${i % 3}` }));
          originals.unshift(`c${i}`);
        }
        const seen: string[] = [];
        let page = await store.listCredentials({}, { limit: 3 });
        seen.push(...page.items.map((v) => v.credential.id));
        await issue(credential('new-1', { issuedAt: now + 100, task: 'task-1' }));
        await issue(credential('new-2', { issuedAt: now + 1, task: 'task-2' })); // among the old ones
        for (let pages = 1; page.next !== undefined && pages < 10; pages++) {
          page = await store.listCredentials({}, { limit: 3, cursor: page.next });
          seen.push(...page.items.map((v) => v.credential.id));
          await issue(credential(`new-p${pages}`, { issuedAt: now + 200 + pages, task: 'task-1' }));
        }
        expect(seen.slice(0, 3)).toEqual(originals.slice(0, 3));
        expect(seen.filter((id) => originals.includes(id))).toEqual(originals);
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen.filter((id) => id.startsWith('new-p'))).toEqual([]); // newer than the cursor
      });

      it('lists exactly three pages, ties broken by id (descending), with task views', async () => {
        for (const id of ['a1', 'a2', 'a3']) await issue(credential(id, { issuedAt: now }));
        for (const id of ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'])
          await issue(credential(id, { issuedAt: now + 1 }));
        const page1 = await store.listCredentials({}, { limit: 3 });
        const page2 = await store.listCredentials({}, { limit: 3, cursor: page1.next });
        const page3 = await store.listCredentials({}, { limit: 3, cursor: page2.next });
        const ids = [page1, page2, page3].map((p) => p.items.map((v) => v.credential.id));
        expect(ids).toEqual([
          ['b6', 'b5', 'b4'],
          ['b3', 'b2', 'b1'],
          ['a3', 'a2', 'a1'],
        ]);
        expect(page1.next).toBeDefined();
        expect(page2.next).toBeDefined();
        expect(page3.next).toBeUndefined();
        expect(page1.items[0]).toEqual({
          credential: credential('b6', { issuedAt: now + 1 }),
          task: await store.getTask('task-1'),
        });
      });

      it('filters by task, SPIFFE ID, attestor and derived status, combined with AND', async () => {
        const A = 'spiffe://example.org/ci';
        const AB = 'spiffe://example.org/ci/build';
        const ABX = 'spiffe://example.org/ci/build/x';
        const AX = 'spiffe://example.org/cix';
        const shared = { origin: 'attestor' } as const;
        await issue(credential('c1', { task: 't1', spiffeId: A, issuedAt: now + 1 }), shared);
        await issue(
          credential('c2', { task: 't1', spiffeId: AB, issuedAt: now + 2, attestor: 'k8s' }),
          shared,
        );
        await issue(credential('c3', { task: 't2', spiffeId: ABX, issuedAt: now + 3, expiresAt: now + 10 }));
        await issue(credential('c4', { task: 't3', spiffeId: AX, issuedAt: now + 4 }));
        await issue(credential('c5', { task: 't3', spiffeId: AX, issuedAt: now + 5 }));
        await issue(credential('c6', { task: 't4', spiffeId: AB, issuedAt: now + 6 }));
        await store.revokeCredential('c4', 'admin', now);
        await store.endTask('t4', { status: 'revoked', reason: 'admin', at: now });
        fake.advance(10_000); // c3 has expired

        expect(await listIds({ task: 't1' })).toEqual(['c2', 'c1']);
        expect(await listIds({ task: 't1' }, 1)).toEqual(['c2', 'c1']);
        expect(await listIds({ task: 'nope' })).toEqual([]);
        expect(await listIds({ spiffeId: AB })).toEqual(['c6', 'c2']);
        expect(await listIds({ spiffeIdPrefix: A })).toEqual(['c6', 'c3', 'c2', 'c1']);
        expect(await listIds({ spiffeIdPrefix: `${A}/` })).toEqual(['c6', 'c3', 'c2']);
        expect(await listIds({ spiffeIdPrefix: AB })).toEqual(['c6', 'c3', 'c2']);
        expect(await listIds({ spiffeIdPrefix: 'spiffe://example.org/c' })).toEqual([]);
        expect(await listIds({ attestor: 'k8s' })).toEqual(['c2']);
        expect(await listIds({ status: 'active' })).toEqual(['c5', 'c2', 'c1']);
        expect(await listIds({ status: 'expired' })).toEqual(['c3']);
        expect(await listIds({ status: 'revoked' })).toEqual(['c6', 'c4']);
        expect(await listIds({ task: 't3', status: 'active' })).toEqual(['c5']);
        expect(await listIds({ spiffeIdPrefix: A, attestor: 'github_actions', status: 'active' })).toEqual([
          'c1',
        ]);
        expect(await listIds({ spiffeId: AX, status: 'revoked' }, 1)).toEqual(['c4']);
        const page = await store.listCredentials({ task: 't4' }, { limit: 10 });
        expect(page.items.map((v) => v.task?.status)).toEqual(['revoked']);
      });

      it('bounds the work of a filtered page: a short page still carries a cursor', async () => {
        await issue(credential('rare', { attestor: 'rare', issuedAt: now }));
        for (let i = 0; i < 60; i++) await issue(credential(`c${i}`, { issuedAt: now + 1 + i }));
        const first = await store.listCredentials({ attestor: 'rare' }, { limit: 1 });
        expect(first.items).toEqual([]);
        expect(first.next).toBeDefined();
        const second = await store.listCredentials({ attestor: 'rare' }, { limit: 1, cursor: first.next });
        expect(second.items.map((v) => v.credential.id)).toEqual(['rare']);
        expect(second.next).toBeUndefined();
      });

      it('refuses an invalid cursor or limit with invalid_request', async () => {
        await issue(credential('c1'));
        await issue(credential('c2'));
        const { next } = await store.listCredentials({}, { limit: 1 });
        expect(next).toBeDefined();
        const taskCursor = (await store.listTasks({}, { limit: 1 })).next;
        for (const cursor of [
          'not a cursor!',
          'abc',
          Buffer.from('1|2|3').toString('base64url'),
          `${next}!`,
          '',
        ]) {
          await expectWritError(store.listCredentials({}, { limit: 1, cursor }), 'invalid_request');
        }
        await issue(credential('t2c', { task: 'task-2' }));
        const tasks = await store.listTasks({}, { limit: 1 });
        expect(tasks.next).toBeDefined();
        await expectWritError(store.listCredentials({}, { limit: 1, cursor: tasks.next }), 'invalid_request');
        await expectWritError(store.listTasks({}, { limit: 1, cursor: next }), 'invalid_request');
        expect(taskCursor).toBeUndefined();
        for (const limit of [0, 1001, 1.5, -1]) {
          await expectWritError(store.listCredentials({}, { limit }), 'invalid_request');
          await expectWritError(store.listTasks({}, { limit }), 'invalid_request');
        }
      });

      it('counts the credentials a task retains', async () => {
        await issue(credential('c1', { expiresAt: now + 10 }));
        await issue(credential('c2'));
        await issue(credential('c3'));
        await store.revokeCredential('c3', 'admin', now);
        expect(await store.countTaskCredentials('task-1')).toBe(3);
        expect(await store.countTaskCredentials('nope')).toBe(0);
        fake.advance((10 + CONTRACT_RETENTION_SECONDS) * 1000); // c1 is dropped
        expect(await store.countTaskCredentials('task-1')).toBe(2);
        expect(await listIds({ task: 'task-1' })).toEqual(['c3', 'c2']);
        expect(await listIds({})).toEqual(['c3', 'c2']);
      });
    });

    describe('listing tasks', () => {
      it('pages newest first, filtered by derived status and owner', async () => {
        await issue(credential('c1', { task: 'old', expiresAt: now + 60 }), { deadline: now + 60 });
        fake.advance(1000);
        await issue(credential('c2', { task: 'mid', issuedAt: now + 1 }));
        fake.advance(1000);
        await issue(credential('c3', { task: 'new', issuedAt: now + 2, spiffeId: OTHER }));
        await store.endTask('mid', { status: 'completed', reason: 'task_done', at: now + 2 });

        const page1 = await store.listTasks({}, { limit: 2 });
        const page2 = await store.listTasks({}, { limit: 2, cursor: page1.next });
        expect(page1.items.map((t) => t.id)).toEqual(['new', 'mid']);
        expect(page2.items.map((t) => t.id)).toEqual(['old']);
        expect(page2.next).toBeUndefined();
        expect(page1.items[0]).toEqual(await store.getTask('new'));

        const ids = async (filter: { status?: TaskRecord['status']; owner?: string }) =>
          (await allPages((cursor) => store.listTasks(filter, { cursor, limit: 1 }))).map((t) => t.id);
        expect(await ids({ status: 'active' })).toEqual(['new', 'old']);
        expect(await ids({ status: 'completed' })).toEqual(['mid']);
        expect(await ids({ owner: OTHER })).toEqual(['new']);
        expect(await ids({ owner: OWNER, status: 'active' })).toEqual(['old']);
        fake.advance(60_000); // `old` passes its deadline: derived expired
        expect(await ids({ status: 'expired' })).toEqual(['old']);
        expect(await ids({ status: 'active' })).toEqual(['new']);
      });
    });

    describe('pending tasks (for the sweeper)', () => {
      it('lists overdue active tasks and ended tasks whose fan-out is unfinished', async () => {
        await issue(credential('a1', { task: 'a', expiresAt: now + 100 }), { deadline: now + 100 });
        await issue(credential('b1', { task: 'b' }), { deadline: now + 1000 });
        await issue(credential('c1', { task: 'c' }));
        await issue(credential('d1', { task: 'd', expiresAt: now + 50 }), { deadline: now + 50 });
        expect(await store.pendingTasks(now, 10)).toEqual({ ending: [], overdue: [] });
        await store.endTask('c', { status: 'completed', reason: 'task_done', at: now });
        expect(await store.pendingTasks(now, 10)).toEqual({ ending: ['c'], overdue: [] });
        fake.advance(100_000);
        expect(await store.pendingTasks(now + 100, 10)).toEqual({ ending: ['c'], overdue: ['d', 'a'] });
        expect(await store.pendingTasks(now + 100, 1)).toEqual({ ending: ['c'], overdue: ['d'] });
        // ending a task moves it from overdue to ending (oldest end first)
        await store.endTask('a', { status: 'expired', reason: 'deadline', at: now + 100 });
        expect(await store.pendingTasks(now + 100, 10)).toEqual({ ending: ['c', 'a'], overdue: ['d'] });
        // a finished fan-out leaves the queue
        expect(await store.fanOutTask('c', 10)).toEqual({ revoked: 1, done: true });
        expect(await store.fanOutTask('a', 10)).toEqual({ revoked: 0, done: true });
        expect(await store.pendingTasks(now + 100, 10)).toEqual({ ending: [], overdue: ['d'] });
        expect(await store.pendingTasks(now + 1000, 10)).toEqual({ ending: [], overdue: ['d', 'b'] });
      });
    });

    describe('lifecycle', () => {
      it('answers ping while open', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('fails calls with ERR_STORE_UNAVAILABLE once closed', async () => {
        await store.close();
        await expectWritError(store.ping(), 'ERR_STORE_UNAVAILABLE');
        await expectWritError(store.getTask('task-1'), 'ERR_STORE_UNAVAILABLE');
      });
    });

    describe('ephemeral state', () => {
      it('marks a key once until it expires', async () => {
        expect(await store.markOnce('replay', 'jti-1', now + 10)).toBe(true);
        expect(await store.markOnce('replay', 'jti-1', now + 10)).toBe(false);
        expect(await store.markOnce('other', 'jti-1', now + 10)).toBe(true);
        const concurrent = await Promise.all(
          Array.from({ length: 10 }, () => store.markOnce('replay', 'jti-2', now + 10)),
        );
        expect(concurrent.filter(Boolean)).toHaveLength(1);
        fake.advance(11_000);
        expect(await store.markOnce('replay', 'jti-1', now + 30)).toBe(true);
      });

      it('reports live marks without writing any (heldMarks)', async () => {
        expect(await store.heldMarks('block', [])).toEqual([]);
        expect(await store.heldMarks('block', ['a', 'b'])).toEqual([false, false]);
        expect(await store.markOnce('block', 'b', now + 10)).toBe(true);
        expect(await store.heldMarks('block', ['a', 'b'])).toEqual([false, true]);
        expect(await store.heldMarks('other', ['b'])).toEqual([false]);
        // Reading wrote nothing: the unmarked key can still be marked once.
        expect(await store.markOnce('block', 'a', now + 5)).toBe(true);
        expect(await store.heldMarks('block', ['a', 'b'])).toEqual([true, true]);
        fake.advance(6_000);
        expect(await store.heldMarks('block', ['a', 'b'])).toEqual([false, true]);
        fake.advance(5_000);
        expect(await store.heldMarks('block', ['a', 'b'])).toEqual([false, false]);
      });

      it('takes an ephemeral value once, and not after it expires', async () => {
        await store.putEphemeral('nonce', 'n1', 'value-1', now + 5);
        expect(await store.getEphemeral('nonce', 'n1')).toBe('value-1');
        expect(await store.getEphemeral('nonce', 'n1')).toBe('value-1');
        const taken = await Promise.all(Array.from({ length: 5 }, () => store.takeEphemeral('nonce', 'n1')));
        expect(taken.filter((v) => v === 'value-1')).toHaveLength(1);
        expect(await store.takeEphemeral('nonce', 'n1')).toBeNull();
        await store.putEphemeral('nonce', 'n2', 'value-2', now + 5);
        fake.advance(6_000);
        expect(await store.getEphemeral('nonce', 'n2')).toBeNull();
        expect(await store.takeEphemeral('nonce', 'n2')).toBeNull();
        expect(await store.takeEphemeral('nonce', 'unknown')).toBeNull();
      });

      it('swaps an ephemeral value only when it still holds the expected one', async () => {
        await store.putEphemeral('approval', 'a1', 'pending', now + 30);
        const results = await Promise.all([
          store.swapEphemeral('approval', 'a1', 'pending', 'approved', now + 30),
          store.swapEphemeral('approval', 'a1', 'pending', 'denied', now + 30),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(['approved', 'denied']).toContain(await store.getEphemeral('approval', 'a1'));
        expect(await store.swapEphemeral('approval', 'missing', 'x', 'y', now + 30)).toBe(false);
        await store.putEphemeral('approval', 'a2', 'pending', now + 5);
        fake.advance(6_000);
        expect(await store.swapEphemeral('approval', 'a2', 'pending', 'approved', now + 30)).toBe(false);
      });

      it('counts hits per fixed window', async () => {
        fake.set(Math.ceil(fake.now() / 60_000) * 60_000);
        expect(await store.countHit('fail', '10.0.0.1', 60)).toBe(1);
        expect(await store.countHit('fail', '10.0.0.1', 60)).toBe(2);
        expect(await store.countHit('fail', '10.0.0.2', 60)).toBe(1);
        fake.advance(60_000);
        expect(await store.countHit('fail', '10.0.0.1', 60)).toBe(1);
      });

      it('refuses malformed scopes and keys', async () => {
        await expect(store.markOnce('Bad Scope', 'k', now + 1)).rejects.toBeInstanceOf(TypeError);
        await expect(store.putEphemeral('ok', '', 'v', now + 1)).rejects.toBeInstanceOf(TypeError);
        await expect(store.countHit('ok', 'x'.repeat(300), 60)).rejects.toBeInstanceOf(TypeError);
      });
    });
  });
}
