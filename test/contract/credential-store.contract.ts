// The CredentialStore contract: one behaviour suite that every adapter (memory, Redis) runs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WritError } from '../../src/errors.ts';
import type {
  CredentialRecord,
  CredentialStore,
  JoinTokenRecord,
  RegistrationEntryInput,
  TaskInit,
} from '../../src/store/types.ts';
import { FakeClock } from '../helpers/clock.ts';

/** Adapters under this suite must be created with this retention. */
export const CONTRACT_RETENTION_SECONDS = 60;

const OWNER = 'spiffe://example.org/ci/build';
const OTHER = 'spiffe://example.org/ci/deploy';

export function credentialStoreContract(
  name: string,
  makeStore: (clock: FakeClock) => Promise<CredentialStore>,
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
  });
}
