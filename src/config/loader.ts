// Loads the configuration once: YAML file, then environment overrides, then the strict schema.
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type WritConfig } from './schema.ts';

export type Mode = 'dev' | 'production';

export interface LoadedConfig {
  config: WritConfig;
  mode: Mode;
  /** The file the configuration came from, if any. */
  source: string | undefined;
}

/** Every problem found in the configuration, each with its path. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

const ENV_OVERRIDES: ReadonlyArray<{
  env: string;
  path: string[];
  type: 'string' | 'int' | 'trust' | 'bool';
}> = [
  { env: 'HOST', path: ['server', 'host'], type: 'string' },
  { env: 'PORT', path: ['server', 'port'], type: 'int' },
  { env: 'REDIS_URL', path: ['redis', 'url'], type: 'string' },
  { env: 'WRIT_REDIS_PREFIX', path: ['redis', 'prefix'], type: 'string' },
  { env: 'WRIT_TRUST_DOMAIN', path: ['trustDomain'], type: 'string' },
  { env: 'WRIT_ISSUER', path: ['issuer'], type: 'string' },
  { env: 'WRIT_ADMIN_TOKEN', path: ['adminToken'], type: 'string' },
  { env: 'LOG_LEVEL', path: ['logLevel'], type: 'string' },
  { env: 'WRIT_POLICY_DIR', path: ['policy', 'dir'], type: 'string' },
  { env: 'WRIT_TRUST_PROXY', path: ['server', 'trustProxy'], type: 'trust' },
  { env: 'WRIT_INSECURE_HTTP', path: ['server', 'insecureHttp'], type: 'bool' },
];

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null) {
      const created: Record<string, unknown> = {};
      node[key] = created;
      node = created;
    } else if (typeof next === 'object' && !Array.isArray(next)) {
      node = next as Record<string, unknown>;
    } else {
      return; // the schema reports the wrong type at this path
    }
  }
  node[path[path.length - 1] as string] = value;
}

function formatIssues(issues: z.core.$ZodIssue[], origin: Map<string, string>): string[] {
  return issues.map((issue) => {
    const path = issue.path.map(String).join('.') || '(root)';
    const env = origin.get(path);
    const message =
      issue.code === 'unrecognized_keys' ? `unknown key(s): ${issue.keys.join(', ')}` : issue.message;
    return `${path}${env ? ` (from ${env})` : ''}: ${message}`;
  });
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): LoadedConfig {
  const problems: string[] = [];
  let raw: Record<string, unknown> = {};
  let source: string | undefined;

  const explicit = env.WRIT_CONFIG;
  const candidate = explicit ?? `${cwd}/config/writ.yaml`;
  if (explicit !== undefined && !existsSync(explicit)) {
    problems.push(`WRIT_CONFIG: file not found: ${explicit}`);
  } else if (existsSync(candidate)) {
    source = candidate;
    try {
      const parsed: unknown = parseYaml(readFileSync(candidate, 'utf8'));
      if (parsed === null || parsed === undefined) raw = {};
      else if (typeof parsed === 'object' && !Array.isArray(parsed)) raw = parsed as Record<string, unknown>;
      else problems.push(`${candidate}: the top level must be a mapping`);
    } catch (e) {
      problems.push(`${candidate}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  const origin = new Map<string, string>();
  for (const { env: name, path, type } of ENV_OVERRIDES) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    origin.set(path.join('.'), name);
    if (type === 'int') {
      if (!/^\d+$/.test(value)) {
        problems.push(`${path.join('.')} (from ${name}): must be an integer`);
        continue;
      }
      setPath(raw, path, Number(value));
    } else if (type === 'bool') {
      if (value !== 'true' && value !== 'false') {
        problems.push(`${path.join('.')} (from ${name}): must be true or false`);
        continue;
      }
      setPath(raw, path, value === 'true');
    } else if (type === 'trust') {
      // express's trust-proxy values: true/false, a hop count, or addresses/subnets.
      setPath(
        raw,
        path,
        value === 'true' ? true : value === 'false' ? false : /^\d+$/.test(value) ? Number(value) : value,
      );
    } else {
      setPath(raw, path, value);
    }
  }

  const result = configSchema.safeParse(raw);
  if (!result.success) problems.push(...formatIssues(result.error.issues, origin));
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);

  const config = result.data;
  const mode: Mode = config.redis.url ? 'production' : 'dev';
  const modeProblems: string[] = [];
  if (mode === 'dev' && env.NODE_ENV === 'production') {
    modeProblems.push(
      'redis.url: dev mode (in-memory store, generated keys and admin token) is refused when NODE_ENV=production; set REDIS_URL',
    );
  }
  if (mode === 'production' && !config.adminToken) {
    modeProblems.push(
      'adminToken: production mode needs an admin token (env WRIT_ADMIN_TOKEN, 32+ characters)',
    );
  }
  if (modeProblems.length > 0) throw new ConfigError(modeProblems);
  return { config, mode, source };
}

/** The issuer URL: configured, or derived from where (and whether over TLS) the broker listens. */
export function issuerOf(config: WritConfig, boundPort?: number, scheme: 'http' | 'https' = 'http'): string {
  if (config.issuer) return config.issuer.replace(/\/+$/, '');
  const host =
    config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const h = host.includes(':') ? `[${host}]` : host;
  return `${scheme}://${h}:${boundPort ?? config.server.port}`;
}
