// A workload's side of the API in tests: get a join token (as admin) and exchange it for a JWT-SVID.
import { expect } from 'vitest';
import type { TestBroker } from './broker.ts';

export interface Svid {
  token: string;
  spiffeId: string;
  id: string;
  task: string;
  expiresAt: number;
}

export async function issueSvid(
  b: TestBroker,
  spiffeId: string,
  opts: { task?: string; audience?: string[]; ttl?: number; bindTask?: string } = {},
): Promise<Svid> {
  const jt = await b.admin('POST', '/v1/admin/join-tokens', {
    spiffeId,
    ...(opts.bindTask ? { task: opts.bindTask } : {}),
  });
  expect(jt.status).toBe(201);
  const res = await b.request('POST', '/v1/svid/jwt', {
    body: {
      attestor: 'join_token',
      evidence: { token: jt.body.token },
      audience: opts.audience ?? ['https://api.example'],
      ...(opts.task ? { task: opts.task } : {}),
      ...(opts.ttl ? { ttl: opts.ttl } : {}),
    },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Svid;
}

export async function introspectActive(b: TestBroker, token: string): Promise<boolean> {
  const res = await b.request('POST', '/v1/introspect', {
    body: { token },
    headers: { authorization: `Bearer ${b.adminToken}` },
  });
  expect(res.status).toBe(200);
  return res.body.active as boolean;
}
