// The workload side of the benchmark: which attestor supplies evidence (static_key when this build has it, else
// join tokens made in bulk beforehand), its registration entry, and the request bodies the load runner sends.
import { createHash, randomBytes } from 'node:crypto';
import { pino } from 'pino';
import type { Attestor, AttestorPlugin } from '../../../src/attestation/types.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import { systemClock } from '../../../src/store/types.ts';
import { type HttpClient, pool } from './http.ts';

export const TRUST_DOMAIN = 'writ.local';
export const SPIFFE_ID = `spiffe://${TRUST_DOMAIN}/bench/workload`;
export const AUDIENCE = 'https://api.example';

export type StaticKeyProbe =
  | { ok: true; section: Record<string, unknown>; key: string; selectors: string[] }
  | { ok: false; reason: string };

/**
 * Whether this build ships the static_key attestor, and what selectors it yields for a fresh key. The plugin is
 * instantiated here with a throwaway in-memory host, so that the registration entry uses exactly its selectors.
 */
export async function probeStaticKey(): Promise<StaticKeyProbe> {
  let plugins: ReadonlyArray<AttestorPlugin<unknown>>;
  let configs: Record<string, unknown>;
  try {
    const mod = (await import('../../../attestors/plugins.ts')) as {
      OPTIONAL_PLUGINS: ReadonlyArray<AttestorPlugin<unknown>>;
    };
    plugins = mod.OPTIONAL_PLUGINS;
    configs = (await import('../../../attestors/configs.ts')).OPTIONAL_ATTESTOR_CONFIGS as Record<
      string,
      unknown
    >;
  } catch (e) {
    return { ok: false, reason: `attestors/plugins.ts does not load: ${(e as Error).message}` };
  }
  const plugin = plugins.find((p) => p.name === 'static_key');
  if (!plugin) {
    const names = plugins.map((p) => p.name).join(', ') || 'none';
    return {
      ok: false,
      reason: `static_key is not registered in attestors/plugins.ts (optional plugins: ${names})`,
    };
  }
  if (!('static_key' in configs)) {
    return { ok: false, reason: 'static_key has no config schema in attestors/configs.ts' };
  }
  const key = `bench-${randomBytes(32).toString('base64url')}`;
  const sha256 = createHash('sha256').update(key).digest('hex');
  const section = { keys: [{ id: 'bench', sha256 }] };
  const parsed = plugin.configSchema.safeParse(section);
  if (!parsed.success) {
    return {
      ok: false,
      reason: `static_key refuses the config ${JSON.stringify(section)}: ${parsed.error.issues[0]?.message}`,
    };
  }
  let attestor: Attestor;
  try {
    attestor = plugin.create(parsed.data, {
      store: new MemoryStore({ clock: systemClock, retentionSeconds: 3600 }),
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      trustDomain: TRUST_DOMAIN,
    });
    const result = await attestor.attest(
      { key },
      { signal: new AbortController().signal, sourceIp: '127.0.0.1' },
    );
    if (result.selectors.length === 0) return { ok: false, reason: 'static_key attested no selectors' };
    return { ok: true, section, key, selectors: result.selectors };
  } catch (e) {
    return { ok: false, reason: `static_key does not attest { key }: ${(e as Error).message}` };
  }
}

export interface Workload {
  attestor: 'static_key' | 'join_token';
  /** Reusable evidence: one body serves every request. Join tokens are single-use. */
  reusable: boolean;
  /** How evidence is made, for the report. */
  note: string;
  /**
   * One body per request (`count` of them) for POST /v1/svid/jwt (with the bench audience) or /v1/svid/x509
   * (no audience); `extra(i)` adds or overrides fields (task, audience, csr...).
   */
  bodies(
    count: number,
    extra?: (i: number) => Record<string, unknown>,
    kind?: 'jwt' | 'x509',
  ): Promise<string[]>;
  /** Fresh evidence for one request. */
  evidence(): Promise<unknown>;
}

export function staticKeyWorkload(key: string): Workload {
  const evidence = { key };
  return {
    attestor: 'static_key',
    reusable: true,
    note: 'static_key (reusable shared key, legacy attestor)',
    async bodies(count, extra, kind = 'jwt') {
      return Array.from({ length: count }, (_, i) =>
        JSON.stringify({
          attestor: 'static_key',
          evidence,
          ...(kind === 'jwt' ? { audience: [AUDIENCE] } : {}),
          ...(extra?.(i) ?? {}),
        }),
      );
    },
    async evidence() {
      return evidence;
    },
  };
}

/** Join tokens made beforehand through POST /v1/admin/join-tokens; their creation is never timed. */
export function joinTokenWorkload(admin: () => HttpClient, adminToken: string, reason: string): Workload {
  const make = async (count: number): Promise<string[]> =>
    pool(count, 32, async () => {
      const res = await admin().request('POST', '/v1/admin/join-tokens', {
        body: { spiffeId: SPIFFE_ID, ttl: 3600 },
        headers: { authorization: `Bearer ${adminToken}` },
      });
      if (res.status !== 201) throw new Error(`join token: ${res.status} ${res.text}`);
      return res.json.token as string;
    });
  return {
    attestor: 'join_token',
    reusable: false,
    note: `join_token (single-use tokens created in bulk before each run, untimed) because ${reason}`,
    async bodies(count, extra, kind = 'jwt') {
      const tokens = await make(count);
      return tokens.map((token, i) =>
        JSON.stringify({
          attestor: 'join_token',
          evidence: { token },
          ...(kind === 'jwt' ? { audience: [AUDIENCE] } : {}),
          ...(extra?.(i) ?? {}),
        }),
      );
    },
    async evidence() {
      const [token] = await make(1);
      return { token };
    },
  };
}

/** The registration entry the workload needs: its selectors map to SPIFFE_ID, audiences limited. */
export async function createEntry(
  admin: HttpClient,
  adminToken: string,
  selectors: string[],
  audiences: string[],
): Promise<string> {
  const res = await admin.request('POST', '/v1/admin/entries', {
    body: { spiffeId: SPIFFE_ID, selectors, audiences },
    headers: { authorization: `Bearer ${adminToken}` },
  });
  if (res.status !== 201) throw new Error(`creating the registration entry: ${res.status} ${res.text}`);
  return res.json.id as string;
}
