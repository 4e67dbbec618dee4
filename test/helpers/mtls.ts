// HTTPS to a production broker in tests: JSON calls that trust only the bundle, optionally with a client
// certificate (mutual TLS), through Node's own https and tls stacks.
import { generateKeyPairSync } from 'node:crypto';
import { type Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { expect } from 'vitest';
import { createCsr } from '../../src/keys/x509/index.ts';
import type { X509Svid, X509Workload } from './x509.ts';

export interface HttpsCall {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** The trust anchors (PEM) the client trusts for the server. */
  ca: string;
  /** Client certificate (PEM, leaf first) and its key. */
  cert?: string | undefined;
  key?: string | undefined;
  /** A shared agent (keep-alive, TLS session cache); default: a fresh connection. */
  agent?: Agent | undefined;
}

export interface HttpsResult {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  body: any;
  text: string;
  headers: import('node:http').IncomingHttpHeaders;
  /** The TLS session was resumed (abbreviated handshake). */
  sessionReused: boolean;
  /** The request went over a connection kept alive from an earlier request. */
  socketReused: boolean;
}

export function httpsCall(url: string, call: HttpsCall): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...call.headers };
    let payload: string | undefined;
    if (call.body !== undefined) {
      payload = JSON.stringify(call.body);
      headers['content-type'] ??= 'application/json';
    }
    const req = request(
      url,
      {
        method: call.method ?? 'GET',
        headers,
        ca: call.ca,
        ...(call.cert === undefined ? {} : { cert: call.cert }),
        ...(call.key === undefined ? {} : { key: call.key }),
        agent: call.agent ?? false,
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const sessionReused = socket.isSessionReused();
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON: keep the text
          }
          resolve({
            status: res.statusCode ?? 0,
            body,
            text,
            headers: res.headers,
            sessionReused,
            socketReused: req.reusedSocket,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A P-256 key (PKCS#8 PEM) and a CSR for it. */
export function newKey(): { key: string; csr: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    csr: createCsr(privateKey),
  };
}

/** The client certificate a workload presents: its SVID, then the intermediates. */
export function certChain(svid: Pick<X509Svid, 'certificate' | 'chain'>): string {
  return [svid.certificate, ...svid.chain].join('');
}

/** A broker reached over HTTPS: admin calls with the bootstrap token, workloads with or without their SVID. */
export class HttpsBroker {
  constructor(
    readonly url: string,
    readonly bundle: string,
    readonly adminToken: string,
  ) {}

  call(path: string, call: Omit<HttpsCall, 'ca'> = {}): Promise<HttpsResult> {
    return httpsCall(`${this.url}${path}`, { ...call, ca: this.bundle });
  }

  admin(method: string, path: string, body?: unknown): Promise<HttpsResult> {
    return this.call(path, {
      method,
      ...(body === undefined ? {} : { body }),
      headers: { authorization: `Bearer ${this.adminToken}` },
    });
  }

  /** An X.509-SVID for `spiffeId` through an admin-made join token (200 expected). */
  async workload(spiffeId: string, opts: { task?: string; ttl?: number } = {}): Promise<X509Workload> {
    const jt = await this.admin('POST', '/v1/admin/join-tokens', { spiffeId });
    expect(jt.status, jt.text).toBe(201);
    const { key, csr } = newKey();
    const res = await this.call('/v1/svid/x509', {
      method: 'POST',
      body: {
        attestor: 'join_token',
        evidence: { token: jt.body.token },
        csr,
        ...(opts.task ? { task: opts.task } : {}),
        ...(opts.ttl ? { ttl: opts.ttl } : {}),
      },
    });
    expect(res.status, res.text).toBe(200);
    return { svid: res.body as X509Svid, key };
  }

  /** POST /v1/svid/x509/renew presenting `as` (its SVID and key) as the client certificate. */
  renew(
    as: { cert: string; key: string } | X509Workload | undefined,
    body: Record<string, unknown>,
    agent?: Agent,
  ): Promise<HttpsResult> {
    const client = as === undefined ? {} : 'svid' in as ? { cert: certChain(as.svid), key: as.key } : as;
    return this.call('/v1/svid/x509/renew', { method: 'POST', body, ...client, agent });
  }
}
