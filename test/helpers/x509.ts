// X.509 in e2e tests: workloads that get X.509-SVIDs from the broker, and mutual TLS between two of them.
import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { expect } from 'vitest';
import type { TestBroker } from './broker.ts';

export interface X509Svid {
  certificate: string;
  chain: string[];
  bundle: string;
  spiffeId: string;
  id: string;
  task: string;
  expiresAt: number;
}

/** A workload holding an X.509-SVID and its private key (PEM). */
export interface X509Workload {
  svid: X509Svid;
  key: string;
}

/** An admin-made join token for `spiffeId`, exchanged with `csr` for an X.509-SVID (200 expected). */
export async function issueX509Svid(
  b: TestBroker,
  spiffeId: string,
  csr: string,
  opts: { task?: string; ttl?: number } = {},
): Promise<X509Svid> {
  const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId });
  expect(jt.status).toBe(201);
  const res = await b.request('POST', '/v1/svid/x509', {
    body: {
      attestor: 'join_token',
      evidence: { token: jt.body.token },
      csr,
      ...(opts.task ? { task: opts.task } : {}),
      ...(opts.ttl ? { ttl: opts.ttl } : {}),
    },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as X509Svid;
}

export interface Handshake {
  ok: boolean;
  serverSawPeer?: string | undefined;
  clientSawPeer?: string | undefined;
  /** Why the server's TLS stack refused the client (only when the server lets the application decide). */
  authorizationError?: string | undefined;
}

/** SPIFFE peers authorize by SPIFFE ID, not host name. */
function expectPeer(id: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined =>
    cert.subjectaltname === `URI:${id}` ? undefined : new Error(`unexpected peer ${cert.subjectaltname}`);
}

/**
 * One mutual-TLS exchange between `server` and `client`, both trusting only `bundle` (PEM); the server checks
 * client certificates against `crl` (PEM or DER) when given.
 */
export async function mutualTls(
  server: X509Workload,
  client: X509Workload,
  bundle: string,
  opts: { crl?: string | Buffer; rejectUnauthorized?: boolean } = {},
): Promise<Handshake> {
  let serverSawPeer: string | undefined;
  let authorizationError: string | undefined;
  const srv: Server = createServer(
    {
      key: server.key,
      cert: [server.svid.certificate, ...server.svid.chain].join(''),
      ca: bundle,
      requestCert: true,
      rejectUnauthorized: opts.rejectUnauthorized ?? true,
      ...(opts.crl === undefined ? {} : { crl: opts.crl }),
    },
    (socket: TLSSocket) => {
      if (socket.authorized) {
        serverSawPeer = socket.getPeerCertificate().subjectaltname;
        socket.end('hello');
      } else {
        authorizationError = String(socket.authorizationError);
        socket.destroy();
      }
    },
  );
  srv.on('tlsClientError', () => {}); // the client's view is what the test reads
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const port = (srv.address() as AddressInfo).port;
    return await new Promise<Handshake>((resolve) => {
      let clientSawPeer: string | undefined;
      let data = '';
      const socket = connect({
        host: '127.0.0.1',
        port,
        key: client.key,
        cert: [client.svid.certificate, ...client.svid.chain].join(''),
        ca: bundle,
        rejectUnauthorized: true,
        checkServerIdentity: expectPeer(server.svid.spiffeId),
      });
      socket.on('secureConnect', () => {
        clientSawPeer = socket.getPeerCertificate().subjectaltname;
      });
      socket.on('data', (d: Buffer) => {
        data += d.toString();
      });
      let settled = false;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        // The server's view of a refused handshake arrives just after the client's.
        setTimeout(() => resolve({ ok, clientSawPeer, serverSawPeer, authorizationError }), 50);
      };
      socket.on('end', () => done(data === 'hello'));
      socket.on('close', () => done(data === 'hello'));
      socket.on('error', () => done(false));
    });
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
}
