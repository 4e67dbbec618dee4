// The derived credential status, shared by both store adapters and the HTTP layer.
import { describe, expect, it } from 'vitest';
import { credentialStatus } from '../../src/store/status.ts';
import type { CredentialRecord, CredentialView, TaskRecord } from '../../src/store/types.ts';

const NOW = 1_700_000_000;

const view = (
  credential: Partial<CredentialRecord> = {},
  task: Partial<TaskRecord> | null = {},
): CredentialView => ({
  credential: {
    id: 'c1',
    type: 'jwt',
    spiffeId: 'spiffe://example.org/w',
    task: 't1',
    attestor: 'join_token',
    audience: [],
    issuedAt: NOW - 10,
    expiresAt: NOW + 300,
    kid: 'k',
    ...credential,
  },
  task:
    task === null
      ? null
      : {
          id: 't1',
          owner: 'spiffe://example.org/w',
          origin: 'generated',
          createdAt: NOW - 10,
          deadline: NOW + 600,
          status: 'active',
          ...task,
        },
});

describe('credentialStatus', () => {
  it('is active while unexpired, unrevoked and in an active task', () => {
    expect(credentialStatus(view(), NOW)).toBe('active');
    expect(credentialStatus(view({}, null), NOW)).toBe('active');
  });

  it('is revoked when revoked on its own, or when its task completed or was revoked', () => {
    expect(credentialStatus(view({ revokedAt: NOW - 1 }), NOW)).toBe('revoked');
    expect(credentialStatus(view({}, { status: 'completed' }), NOW)).toBe('revoked');
    expect(credentialStatus(view({}, { status: 'revoked' }), NOW)).toBe('revoked');
    // revocation wins over expiry
    expect(credentialStatus(view({ revokedAt: NOW - 1, expiresAt: NOW - 1 }), NOW)).toBe('revoked');
    expect(credentialStatus(view({ expiresAt: NOW - 1 }, { status: 'completed' }), NOW)).toBe('revoked');
  });

  it('is expired at its expiry, or when its task expired (stored, or derived past the deadline)', () => {
    expect(credentialStatus(view({ expiresAt: NOW }), NOW)).toBe('expired');
    expect(credentialStatus(view({ expiresAt: NOW + 1 }), NOW)).toBe('active');
    expect(credentialStatus(view({}, { status: 'expired' }), NOW)).toBe('expired');
    expect(credentialStatus(view({}, { deadline: NOW }), NOW)).toBe('expired');
  });
});
