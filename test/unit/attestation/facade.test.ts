import { describe, expect, it } from 'vitest';
import { AttestorFacade } from '../../../src/attestation/facade.ts';
import { AttestationError, type AttestationResult, type Attestor } from '../../../src/attestation/types.ts';
import { WritError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/observability/logger.ts';

function plugin(name: string, attest: Attestor['attest'], legacy = false): Attestor {
  return { name, legacy, taskNamespace: name, attest };
}

function facade(...attestors: Attestor[]): AttestorFacade {
  return new AttestorFacade({
    attestors,
    timeoutMs: 100,
    trustDomain: 'example.org',
    logger: createLogger('silent'),
  });
}

async function codeOf(p: Promise<unknown>): Promise<[string, string | undefined]> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WritError);
    return [(e as WritError).code, (e as WritError).detail];
  }
  throw new Error('expected a rejection');
}

const returning = (r: unknown) => plugin('fake', async () => r as AttestationResult);

describe('attestor facade', () => {
  it('passes a valid result through, deduplicating selectors and marking legacy attestors', async () => {
    const f = facade(
      plugin(
        'fake',
        async () => ({
          selectors: ['fake:a:1', 'fake:a:1', 'fake:b:x:y'],
          task: 'fake:run-1',
          spiffeId: 'spiffe://example.org/w',
          posture: { patched: true },
          expiresAt: 1_900_000_000,
        }),
        true,
      ),
    );
    expect(await f.attest('fake', {})).toEqual({
      attestor: 'fake',
      legacy: true,
      selectors: ['fake:a:1', 'fake:b:x:y'],
      task: 'fake:run-1',
      spiffeId: 'spiffe://example.org/w',
      posture: { patched: true },
      expiresAt: 1_900_000_000,
    });
  });

  it('refuses an unknown attestor', async () => {
    expect(await codeOf(facade().attest('nope', {}))).toEqual([
      'ERR_ATTESTOR_UNKNOWN',
      'no attestor named "nope" is enabled',
    ]);
  });

  it("prefixes a plugin's refusal with its name", async () => {
    const f = facade(plugin('fake', async () => Promise.reject(new AttestationError('bad evidence'))));
    expect(await codeOf(f.attest('fake', {}))).toEqual(['ERR_ATTESTATION_FAILED', 'fake: bad evidence']);
  });

  it('hides unexpected plugin errors', async () => {
    const f = facade(plugin('fake', async () => Promise.reject(new Error('secret internal detail'))));
    expect(await codeOf(f.attest('fake', {}))).toEqual([
      'ERR_ATTESTATION_FAILED',
      'fake: attestation failed',
    ]);
  });

  it('passes store outages through as 503', async () => {
    const f = facade(plugin('fake', async () => Promise.reject(new WritError('ERR_STORE_UNAVAILABLE'))));
    expect((await codeOf(f.attest('fake', {})))[0]).toBe('ERR_STORE_UNAVAILABLE');
  });

  it('times out a slow plugin and aborts its signal', async () => {
    let aborted = false;
    const f = facade(
      plugin('fake', (_e, ctx) => {
        ctx.signal.addEventListener('abort', () => {
          aborted = true;
        });
        return new Promise(() => {});
      }),
    );
    expect(await codeOf(f.attest('fake', {}))).toEqual([
      'ERR_ATTESTOR_UNAVAILABLE',
      'fake: attestation timed out',
    ]);
    expect(aborted).toBe(true);
  });

  it.each([
    ['a selector of another attestor', { selectors: ['join_token:spiffe_id:spiffe://example.org/admin'] }],
    ['a malformed selector', { selectors: ['fake:novalue'] }],
    ['a selector with a newline', { selectors: ['fake:a:x\ny'] }],
    ['an invalid task id', { selectors: [], task: 'a{b}' }],
    ['a task outside its namespace', { selectors: [], task: 'github:acme/api/1/1' }],
    ['a task without a namespace', { selectors: [], task: 'run-1' }],
    ['the trust domain ID as identity', { selectors: [], spiffeId: 'spiffe://example.org' }],
    ['an invalid SPIFFE ID', { selectors: [], spiffeId: 'spiffe://example.org/a/../b' }],
    ['a SPIFFE ID of another trust domain', { selectors: [], spiffeId: 'spiffe://evil.org/w' }],
    ['unknown fields', { selectors: [], admin: true }],
    ['not an object', 'yes'],
    ['null', null],
    ['selectors not a list', { selectors: 'fake:a:b' }],
    ['too many selectors', { selectors: Array.from({ length: 129 }, (_, i) => `fake:k:${i}`) }],
    ['posture with an object value', { selectors: [], posture: { x: { y: 1 } } }],
    ['a fractional expiry', { selectors: [], expiresAt: 1.5 }],
  ])('refuses a plugin result with %s', async (_name, result) => {
    expect(await codeOf(facade(returning(result)).attest('fake', {}))).toEqual([
      'ERR_ATTESTATION_FAILED',
      'fake: attestation failed',
    ]);
  });
});
