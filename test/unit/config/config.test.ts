import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderExampleConfig } from '../../../src/config/example.ts';
import { ConfigError, issuerOf, loadConfig } from '../../../src/config/loader.ts';

function dirWith(yaml?: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'writ-config-'));
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

describe('configuration', () => {
  it('runs in dev mode with defaults when nothing is configured', () => {
    const { config, mode, source } = loadConfig({}, dirWith());
    expect(mode).toBe('dev');
    expect(source).toBeUndefined();
    expect(config.server).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(config.credentials.jwtDefaultTtl).toBe(300);
    expect(config.attestors.join_token.defaultTtl).toBe(600);
    expect(issuerOf(config)).toBe('http://127.0.0.1:8080');
  });

  it('reads config/writ.yaml and lets the environment override it', () => {
    const dir = dirWith('trustDomain: file.org\nserver:\n  port: 9000\ncredentials:\n  jwtDefaultTtl: 120\n');
    const { config, source } = loadConfig({ PORT: '9100', HOST: '0.0.0.0' }, dir);
    expect(source).toBe(join(dir, 'config', 'writ.yaml'));
    expect(config.trustDomain).toBe('file.org');
    expect(config.server.port).toBe(9100);
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.credentials.jwtDefaultTtl).toBe(120);
  });

  it('lists every problem with its path, including unknown keys and env values', () => {
    const dir = dirWith('trustDomain: Bad.Org\nservre: {}\ncredentials:\n  jwtDefaultTtl: 0\n  maxTtl: 10\n');
    const problems = problemsOf(() => loadConfig({ PORT: 'eighty', WRIT_ISSUER: 'ftp://x' }, dir));
    expect(problems).toEqual(
      expect.arrayContaining([
        'server.port (from PORT): must be an integer',
        expect.stringMatching(/^trustDomain: trust domain must be lowercase/),
        expect.stringMatching(/^\(root\): unknown key\(s\): servre/),
        expect.stringMatching(/^credentials\.jwtDefaultTtl: /),
        expect.stringMatching(/^issuer \(from WRIT_ISSUER\): /),
      ]),
    );
    expect(problems.length).toBeGreaterThanOrEqual(5);
  });

  it('refuses dev mode under NODE_ENV=production and production without an admin token', () => {
    expect(problemsOf(() => loadConfig({ NODE_ENV: 'production' }, dirWith()))[0]).toMatch(
      /^redis\.url: dev mode/,
    );
    expect(problemsOf(() => loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }, dirWith()))[0]).toMatch(
      /^adminToken: production mode needs/,
    );
    const ok = loadConfig(
      { REDIS_URL: 'redis://127.0.0.1:6379', WRIT_ADMIN_TOKEN: 'x'.repeat(32) },
      dirWith(),
    );
    expect(ok.mode).toBe('production');
  });

  it('reports a missing WRIT_CONFIG file and invalid YAML', () => {
    expect(problemsOf(() => loadConfig({ WRIT_CONFIG: '/nonexistent/writ.yaml' }, dirWith()))[0]).toMatch(
      /WRIT_CONFIG: file not found/,
    );
    expect(problemsOf(() => loadConfig({}, dirWith('a: [1,\n')))[0]).toMatch(/not valid YAML/);
    expect(problemsOf(() => loadConfig({}, dirWith('- 1\n')))[0]).toMatch(/must be a mapping/);
  });

  it('keeps config/writ.example.yaml in step with the schema, and the example parses', () => {
    const file = new URL('../../../config/writ.example.yaml', import.meta.url);
    expect(readFileSync(file, 'utf8')).toBe(renderExampleConfig());
    const dir = dirWith(readFileSync(file, 'utf8'));
    expect(loadConfig({}, dir).mode).toBe('dev');
  });
});
