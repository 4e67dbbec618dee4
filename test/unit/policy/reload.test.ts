import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, PolicyError } from '../../../src/policy/index.ts';
import { policyDir, request, writeFiles } from './fixtures.ts';

const PERMIT = '@id("allow-api") permit (principal, action in Writ::Action::"issue", resource);';
const FORBID = '@id("lockdown") forbid (principal, action, resource);';

describe('reloading policies', () => {
  it('swaps in a changed directory, and the version changes with it', async () => {
    const dir = await policyDir({ 'a.cedar': PERMIT });
    const engine = await PolicyEngine.load({ dir });
    const before = engine.version;
    expect(engine.decide(request()).decision).toBe('allow');

    await writeFiles(dir, { 'b.cedar': FORBID });
    const set = await engine.reload();
    expect(set.policies.map((p) => p.id)).toEqual(['allow-api', 'lockdown']);
    expect(engine.decide(request())).toMatchObject({ decision: 'deny', reasons: ['lockdown'] });
    expect(engine.version).not.toBe(before);

    await rm(join(dir, 'b.cedar'));
    await engine.reload();
    expect(engine.decide(request()).decision).toBe('allow');
    expect(engine.version).toBe(before);
  });

  it('keeps the old set when the new one is invalid, and says why', async () => {
    const dir = await policyDir({ 'a.cedar': PERMIT });
    const engine = await PolicyEngine.load({ dir });
    const version = engine.version;
    await writeFiles(dir, { 'a.cedar': `${PERMIT}\n${FORBID.replace('forbid', 'forbidd')}` });

    const failed = engine.reload();
    await expect(failed).rejects.toBeInstanceOf(PolicyError);
    await expect(failed).rejects.toThrow(/a\.cedar:2:/);
    expect(engine.version).toBe(version);
    expect(engine.policySet.policies.map((p) => p.id)).toEqual(['allow-api']);
    expect(engine.decide(request())).toMatchObject({ decision: 'allow', reasons: ['allow-api'] });
  });

  it('keeps the old set when the new directory is missing', async () => {
    const engine = await PolicyEngine.load({ dir: await policyDir({ 'a.cedar': PERMIT }) });
    await expect(engine.reload('/nonexistent/writ-policies')).rejects.toThrow(/no such directory/);
    expect(engine.decide(request()).decision).toBe('allow');
  });

  it('reloads from another directory', async () => {
    const engine = await PolicyEngine.load({ dir: await policyDir({ 'a.cedar': PERMIT }) });
    const other = await policyDir({ 'z.cedar': FORBID });
    await engine.reload(other);
    expect(engine.policySet.dir).toBe(other);
    expect(engine.decide(request())).toMatchObject({ decision: 'deny', reasons: ['lockdown'] });
  });

  it('runs overlapping reloads one after the other; the last one wins', async () => {
    const first = await policyDir({ 'a.cedar': PERMIT });
    const second = await policyDir({ 'a.cedar': FORBID });
    const engine = await PolicyEngine.load({ dir: first });
    await Promise.all([engine.reload(second), engine.reload(first), engine.reload(second)]);
    expect(engine.policySet.dir).toBe(second);
    expect(engine.decide(request()).reasons).toEqual(['lockdown']);
  });

  it('keeps engines apart: each has its own pre-parsed sets', async () => {
    const a = await PolicyEngine.load({ dir: await policyDir({ 'a.cedar': PERMIT }) });
    const b = await PolicyEngine.load({ dir: await policyDir({ 'a.cedar': FORBID }) });
    await a.reload();
    await b.reload();
    expect(a.decide(request()).decision).toBe('allow');
    expect(b.decide(request()).decision).toBe('deny');
  });
});
