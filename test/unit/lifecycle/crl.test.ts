// The CRL publisher over a real (memory) store: what is listed, when a new CRL is signed, and outages.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.ts';
import { generateRootCa } from '../../../src/keys/x509/index.ts';
import { CrlPublisher, crlReasonOf } from '../../../src/lifecycle/crl.ts';
import { RevocationHub } from '../../../src/lifecycle/revocation-feed.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import type { CredentialRecord } from '../../../src/store/types.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { waitFor } from '../../helpers/wait.ts';
import { opensslOk, type TempDir, tempDir } from '../x509/helpers.ts';

const TD = 'example.org';
const OWNER = `spiffe://${TD}/w`;
const config = configSchema.parse({ trustDomain: TD });
const logger = createLogger('silent');

class CountingStore extends MemoryStore {
  crlsSigned = 0;
  override async nextSequence(name: string): Promise<number> {
    if (name === 'crl') this.crlsSigned += 1;
    return super.nextSequence(name);
  }
}

describe('CrlPublisher', () => {
  let t: TempDir;
  let fake: FakeClock;
  let store: CountingStore;
  let crl: CrlPublisher;
  let hub: RevocationHub | undefined;
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 86_400, clock: Date.now });
  let n = 0;

  beforeEach(() => {
    fake = new FakeClock();
    store = new CountingStore({ clock: fake.clock });
    crl = new CrlPublisher({ store, ca, clock: fake.clock, logger, config });
  });
  beforeAll(async () => {
    t = await tempDir('writ-crl-');
    await t.write('ca.pem', ca.rootsPem.join(''));
  });
  afterAll(() => t.cleanup());
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
    const r = await store.recordIssuance(c, {
      id: task,
      owner: OWNER,
      origin: 'caller',
      deadline: now + 3600,
    });
    expect(r.ok).toBe(true);
    return c;
  };
  /** openssl's reading of a CRL, after it verified the signature with the CA. */
  const text = async (der: Buffer): Promise<string> => {
    await t.write('crl.der', der);
    return opensslOk(
      ['crl', '-inform', 'DER', '-in', 'crl.der', '-CAfile', 'ca.pem', '-verify', '-noout', '-text'],
      t.dir,
    );
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
    const read = await text(after.der);
    expect([...read.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => m[1]!.toLowerCase())).toEqual([
      cert.id,
    ]);
    expect(read).toContain('Cessation Of Operation');
  });

  it('keeps a serial revoked on its own at its first revocation, with its reason', async () => {
    const cert = await issue('t1', 'x509');
    await store.revokeCredential(cert.id, 'key_compromise', fake.seconds(), 't1');
    fake.advance(10_000);
    await end('t1');
    const signed = await crl.current();
    expect(signed.serials).toEqual([cert.id]);
    const read = await text(signed.der);
    expect(read).toContain('Key Compromise');
    // openssl prints `Nov 27 22:05:56 2026 GMT`: the time of the first revocation, 10 s before the task end
    const first = new Date((fake.seconds() - 10) * 1000);
    const [, day, mon, year, time] = first.toUTCString().split(' ') as string[];
    const printed = `${mon} ${String(Number(day)).padStart(2, ' ')} ${time} ${year} GMT`;
    expect(read).toContain(`Revocation Date: ${printed}`);
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

  it('rebuilds in the background on revocations while its CRL is asked for, and only then', async () => {
    hub = new RevocationHub({ store, logger });
    hub.start();
    crl = new CrlPublisher({ store, ca, clock: fake.clock, logger, config, feed: hub });
    crl.start();
    expect(hub.subscribers).toBe(0); // an internal follower takes no SSE slot
    const quiet = await issue('t0', 'x509');
    await end('t0');
    await new Promise((r) => setTimeout(r, 300));
    expect(store.crlsSigned).toBe(0); // nobody asked for a CRL: no work

    const first = await crl.current(); // a relying party asks
    expect(first.serials).toEqual([quiet.id]);
    expect(store.crlsSigned).toBe(1);
    const cert = await issue('t1', 'x509');
    await end('t1');
    // signed without another request
    await waitFor(() => store.crlsSigned === 2, { timeoutMs: 2_000, what: 'a background rebuild' });
    const next = await crl.current();
    expect([...next.serials].sort()).toEqual([quiet.id, cert.id].sort());
    expect(store.crlsSigned).toBe(2);
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
