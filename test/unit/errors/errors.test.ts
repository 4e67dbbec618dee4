import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, WritError } from '../../../src/errors.ts';

describe('error registry', () => {
  const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');

  it.each(Object.entries(ERRORS))('documents %s with its status in docs/api.md', (code, spec) => {
    expect(doc).toContain(`| \`${code}\` | ${spec.status} |`);
  });

  it('writes the RFC 6749 shape, with the safe detail or the registered description', () => {
    expect(new WritError('ERR_TTL_INVALID').toJSON()).toEqual({
      error: 'ERR_TTL_INVALID',
      error_description: 'the requested ttl is out of range',
    });
    const e = new WritError('server_error', undefined, { cause: new Error('secret') });
    expect(JSON.stringify(e.toJSON())).not.toContain('secret');
    expect(e.status).toBe(500);
  });
});
