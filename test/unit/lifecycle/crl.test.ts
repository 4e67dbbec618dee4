// The CRL publisher over a real (memory) store: what is listed, when a new CRL is signed, and outages.
import { X509Crl } from '@peculiar/x509';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.ts';
import { generateRootCa } from '../../../src/keys/x509/index.ts';
import { CrlPublisher, crlReasonOf } from '../../../src/lifecycle/crl.ts';
import { RevocationHub } from '../../../src/lifecycle/revocation-feed.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import type { CredentialRecord } from '../../../src/store/types.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { waitFor } from '../../helpers/wait.ts';

const TD = 'example.org';
const OWNER = `spiffe://${TD}/w`;
const config = configSchema.parse({ trustDomain: TD });
const logger = createLogger('silent');

describe('CrlPublisher', () => {
  let fake: FakeClock;
  let store: MemoryStore;
  let crl: CrlPublisher;
  let hub: RevocationHub | undefined;
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 86_400, clock: Date.now });
  let n = 0;

  beforeEach(() => {
    fake = new FakeClock();
    store = new MemoryStore({ clock: fake.clock });
    crl = new CrlPublisher({ store, ca, clock: fake.clock, logger, config });
  });
  afterEach(async () => {
    await crl.close();
    await hub?.close();
    hub = undefined;
    await store.close();
  });

  /** Records a credential in `task` (opened as needed); x509 ids are serials. */
  const issue = async (task: string, type: 'jwt' | 'x509', ttl = 600): Promise<CredentialRecord> => {
    n += 1;
    const now = fake.seconds();
    const c: CredentialRecord = {
      id: type === 'x509' ? `4${n.toString(16).padStart(31, '0')}` : `jwt-${n}`,
      type,
      spiffeId: OWNER,
      task,
      attestor: 'join_token',
      audience: [],
      issuedAt: now,
      expiresAt: now + ttl,
      kid: 'k',
    };
    const r = await store.recordIssuance(c, { id: task, owner: OWNER, origin: 'caller', deadline: now + 3600 });
    expect(r.ok).toBe(true);
    return c;
  };
  const end = (task: string, reason = 'task_completed') =>
    store.endTask(task, { status: 'completed', reason, at: fake.seconds() });

  it('lists the X.509-SVIDs of an ended task at once (before any fan-out), and no JWT-SVID', async () => {
    const cert = await issue('t1', 'x509');
    const jwt = await issue('t1', 'jwt');
    const other = await issue('t2', 'x509');
    const empty = await crl.current();
    expect(empty.serials).toEqual([]);
    await end('t1');
    const after = await crl.current();
    expect(after.serials).toEqual([cert.id]);
    expect(after.serials).not.toContain(jwt.id);
    expect(after.serials).not.toContain(other.id);
    expect(after.number).toBeGreaterThan(empty.number);
    // the fan-out's own events change nothing: same set, same CRL
    await store.fanOutTask('t1', 100);
    expect(await crl.current()).toBe(after);
    const parsed = new X509Crl(after.der);
    expect(parsed.entries.map((e) => e.serialNumber.toLowerCase())).toEqual([cert.id]);
    expect(parsed.entries[0]?.reason).toBe(5); // cessationOfOperation
    expect(await parsed.verify({ publicKey: await crypto.subtle.importKey('spki', ca.publicKey.export({ type: 'spki', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']) })).toBe(true);
  });

  it('keeps a serial revoked on its own at its first revocation, with its reason', async () => {
    const cert = await issue('t1', 'x509');
    await store.revokeCredential(cert.id, 'key_compromise', fake.seconds(), 't1');
    fake.advance(10_000);
    await end('t1');
    const signed = await crl.current();
    const entry = new X509Crl(signed.der).entries[0]!;
    expect(entry.serialNumber.toLowerCase()).toBe(cert.id);
    expect(entry.reason).toBe(1); // keyCompromise
    expect(Math.floor(entry.revocationDate.getTime() / 1000)).toBe(fake.seconds() - 10);
  });

  it('drops expired certificates, re-signs at half validity, and not before', async () => {
    const short = await issue('t1', 'x509', 60);
    const long = await issue('t1', 'x509', 3000);
    await end('t1');
    const first = await crl.current();
    expect([...first.serials].sort()).toEqual([short.id, long.id].sort());
    expect(first.nextUpdate - first.thisUpdate).toBe(3600 + config.credentials.backdate);
    fake.advance(120_000);
    const second = await crl.current();
    expect(second.serials).toEqual([long.id]);
    expect(second.number).toBe(first.number + 1);
    fake.advance(1_000_000); // 1000 s: under half of the hour
    expect(await crl.current()).toBe(second);
    fake.advance(1_000_000); // past half
    const third = await crl.current();
    expect(third.number).toBe(second.number + 1);
    expect(third.serials).toEqual([long.id]);
  });

  it('serves the last CRL through a store outage while it is valid, then fails', async () => {
    await issue('t1', 'x509');
    await end('t1');
    const last = await crl.current();
    await store.close();
    expect(await crl.current()).toBe(last);
    fake.advance(3_700_000);
    await expect(crl.current()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
  });

  it('rebuilds in the background on revocations while its CRL is asked for', async () => {
    hub = new RevocationHub({ store, logger });
    hub.start();
    crl = new CrlPublisher({ store, ca, clock: fake.clock, logger, config, feed: hub });
    crl.start();
    expect(hub.subscribers).toBe(0); // an internal follower takes no SSE slot
    const cert = await issue('t1', 'x509');
    await crl.current(); // a relying party asks
    const before = await store.nextSequence('probe');
    await end('t1');
    // signed without another request: the next CRL number was taken in the background
    await waitFor(async () => (await crl.current()).serials.includes(cert.id) && true, { timeoutMs: 2_000 });
    expect(before).toBe(1);
  });

  it('maps reason codes to RFC 5280 reasons', () => {
    expect(crlReasonOf('task_completed')).toBe('cessationOfOperation');
    expect(crlReasonOf('task_deadline')).toBe('cessationOfOperation');
    expect(crlReasonOf('key_compromise')).toBe('keyCompromise');
    expect(crlReasonOf('admin')).toBe('unspecified');
    expect(crlReasonOf('constructor')).toBe('unspecified');
    expect(crlReasonOf('__proto__')).toBe('unspecified');
  });
});
