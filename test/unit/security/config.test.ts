// Configuration as an attack surface: secrets never appear in problems, key prefixes cannot break hash tags,
// YAML cannot pollute prototypes.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config/loader.ts';

function dirWith(yaml?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'writ-config-sec-'));
  if (yaml !== undefined) {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'writ.yaml'), yaml);
  }
  return dir;
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const PROD = { REDIS_URL: 'redis://127.0.0.1:6379', WRIT_ADMIN_TOKEN: 'a'.repeat(40) };

describe('configuration security', () => {
  it('refuses prefixes that would put every key into one hash slot or break key parsing', () => {
    for (const prefix of ['{t:x}', 'a{b', 'a}b', 'a b', 'a\nb', 'a*', 'a?', 'x'.repeat(65)]) {
      const fromEnv = problemsOf(() => loadConfig({ ...PROD, WRIT_REDIS_PREFIX: prefix }, dirWith()));
      expect(
        fromEnv.some((p) => p.startsWith('redis.prefix')),
        prefix,
      ).toBe(true);
      const fromFile = problemsOf(() =>
        loadConfig(PROD, dirWith(`redis:\n  prefix: ${JSON.stringify(prefix)}\n`)),
      );
      expect(
        fromFile.some((p) => p.startsWith('redis.prefix')),
        prefix,
      ).toBe(true);
    }
  });

  it('never echoes the admin token or a Redis password in a problem', () => {
    const short = 'short-but-secret-Zq9';
    const cases: Array<[Record<string, string>, string | undefined]> = [
      [{ ...PROD, WRIT_ADMIN_TOKEN: short }, undefined],
      [{ ...PROD, REDIS_URL: 'http://:S3cretRedisPw@redis:6379' }, undefined],
      [{ REDIS_URL: PROD.REDIS_URL }, `adminToken: ${short}\n  bad: [indent\n`],
      [{ REDIS_URL: PROD.REDIS_URL }, `adminToken: ${short}\n`],
      [{ REDIS_URL: PROD.REDIS_URL }, `adminToken: [${short}]\n`],
      [{ REDIS_URL: PROD.REDIS_URL }, `adminToken:\n  ${short}: 1\n`],
    ];
    for (const [env, yaml] of cases) {
      const problems = problemsOf(() => loadConfig(env, dirWith(yaml)));
      const text = problems.join('\n');
      expect(text.length).toBeGreaterThan(0);
      expect(text).not.toContain(short);
      expect(text).not.toContain('S3cretRedisPw');
    }
  });

  it('refuses __proto__ and constructor keys in the YAML file without polluting prototypes', () => {
    for (const yaml of [
      '__proto__:\n  polluted: 1\n',
      'server:\n  __proto__:\n    polluted: 1\n',
      'constructor:\n  prototype:\n    polluted: 1\n',
      'credentials:\n  constructor: {}\n',
    ]) {
      const problems = problemsOf(() => loadConfig({}, dirWith(yaml)));
      expect(problems.length, yaml).toBeGreaterThan(0);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    }
  });

  it('refuses an issuer that is not an http(s) URL', () => {
    for (const issuer of ['javascript:alert(1)', 'file:///etc/passwd', 'ftp://x', 'not a url', '//x']) {
      const problems = problemsOf(() => loadConfig({ WRIT_ISSUER: issuer }, dirWith()));
      expect(
        problems.some((p) => p.startsWith('issuer')),
        issuer,
      ).toBe(true);
    }
  });
});
