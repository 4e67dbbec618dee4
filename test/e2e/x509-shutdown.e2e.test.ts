// Shutdown and the CA's signing and mint-check thread: the broker ends it after the server has stopped taking
// requests; a CA that is closed issues nothing more asynchronously (fail closed, never an unchecked certificate).
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCsr, parseCsr } from '../../src/keys/x509/index.ts';
import { startTestBroker } from '../helpers/broker.ts';

describe('the CA thread at shutdown', () => {
  it('issues through the thread while the broker runs, and is ended when the broker closes', async () => {
    const b = await startTestBroker({ config: { trustDomain: 'shutdown.test' } });
    const ca = b.broker.deps.ca;
    const csr = parseCsr(createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));
    const now = Math.floor(Date.now() / 1000);
    const request = {
      spiffeId: 'spiffe://shutdown.test/w',
      spki: csr.spki,
      publicKey: csr.publicKey,
      notAfter: now + 300,
      now,
      backdate: 0,
    };
    const issued = await ca.issueX509SvidAsync(request);
    expect(issued.pem).toContain('BEGIN CERTIFICATE');
    await b.close();
    await expect(ca.issueX509SvidAsync(request)).rejects.toMatchObject({
      code: 'ERR_CA_MINT_CHECK',
      message: expect.stringContaining('the ca is closed'),
    });
  });
});
