// `npm run bench [-- --quick | --profile | --only=jwt,x509,...]`: Writ's benchmark. Starts a private Redis and the
// broker in production mode, drives it with autocannon from a separate process next to its peers, prints a
// table, writes bench/results/<timestamp>.json, and prints one JSON summary as its last line.
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { type RedisServer, startRedisServer } from '../../test/helpers/redis-server.ts';
import { type BrokerProcess, sourceDigest, startBrokerProcess } from './lib/broker.ts';
import { type BenchContext, type BenchSettings, Skipped } from './lib/context.ts';
import { httpClient } from './lib/http.ts';
import { stopRunner } from './lib/load.ts';
import { describeMachine } from './lib/machine.ts';
import { type PeerProcess, startPeer } from './lib/peers.ts';
import { PerfRecorder, type PerfSummary, perfAvailable } from './lib/perf.ts';
import { cpuMicros, sleep } from './lib/procs.ts';
import { type ProfileSummary, summarizeProfile } from './lib/profile.ts';
import { type RelyingParty, startRelyingParty } from './lib/relying-party.ts';
import { fmt, round, type Summary } from './lib/stats.ts';
import {
  AUDIENCE,
  createEntry,
  joinTokenWorkload,
  probeStaticKey,
  SPIFFE_ID,
  type StaticKeyProbe,
  staticKeyWorkload,
  type Workload,
} from './lib/workload.ts';
import { type IssuanceResult, runIssuance } from './scenarios/issuance.ts';
import { type MemoryResult, runMemory } from './scenarios/memory.ts';
import { type PolicyResult, runPolicy } from './scenarios/policy.ts';
import { type PropagationResult, runPropagation } from './scenarios/propagation.ts';
import { runVerify, type VerifyResult } from './scenarios/verify.ts';
import { runWorkers, type WorkersResult } from './scenarios/workers.ts';
import { runX509, type X509Result } from './scenarios/x509.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const RESULTS_DIR = path.join(ROOT, 'bench/results');
const SCENARIOS = ['jwt', 'workers', 'x509', 'propagation', 'verify', 'policy', 'memory'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

interface Args {
  quick: boolean;
  profile: boolean;
  perf: boolean;
  /** Use join tokens even when static_key is available (to compare attestors). */
  joinTokens: boolean;
  /** Extra node options for the broker (`--broker-node-options="--no-opt"`). */
  brokerNodeOptions: string[];
  only: Set<ScenarioName>;
}

function parseArgs(argv: string[]): Args {
  let quick = false;
  let profile = false;
  let perf = false;
  let joinTokens = false;
  let brokerNodeOptions: string[] = [];
  let only = new Set<ScenarioName>(SCENARIOS);
  for (const arg of argv) {
    if (arg === '--quick') quick = true;
    else if (arg === '--profile') profile = true;
    else if (arg === '--perf') perf = true;
    else if (arg === '--join-tokens') joinTokens = true;
    else if (arg.startsWith('--broker-node-options=')) {
      brokerNodeOptions = arg.slice('--broker-node-options='.length).split(/\s+/).filter(Boolean);
    } else if (arg.startsWith('--only=')) {
      const names = arg.slice('--only='.length).split(',').filter(Boolean);
      const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
      if (unknown.length > 0) usage(`unknown scenario(s): ${unknown.join(', ')}`);
      only = new Set(names as ScenarioName[]);
    } else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument: ${arg}`);
  }
  // --profile profiles scenario 1 unless --only names others (e.g. --only=x509).
  if (profile && !argv.some((a) => a.startsWith('--only='))) only = new Set<ScenarioName>(['jwt']);
  // --perf records scenarios 1 and 2 unless --only names others; perf reads JS names from V8's perf map.
  if (perf && !argv.some((a) => a.startsWith('--only='))) only = new Set<ScenarioName>(['jwt', 'x509']);
  if (perf) brokerNodeOptions = [...brokerNodeOptions, '--perf-basic-prof'];
  return { quick, profile, perf, joinTokens, brokerNodeOptions, only };
}

function usage(problem?: string): never {
  const text =
    'usage: npm run bench -- [--quick] [--profile] [--perf] [--join-tokens] [--broker-node-options=...] [--only=' +
    `${SCENARIOS.join(',')}]\n` +
    '  --quick    3 short interleaved runs per figure, smaller populations (< 2 min)\n' +
    '  --profile  scenario 1 (or --only=...), the broker under node --cpu-prof; top self-time functions\n' +
    '  --perf     scenarios 1 and 2 (or --only=...), every thread of the broker under Linux perf during its\n' +
    '             measured runs: CPU µs per request by category (OpenSSL, V8 GC, kernel, JS by package)\n' +
    '  --join-tokens  single-use join tokens as evidence even when static_key is available\n' +
    '  --broker-node-options="<flags>"  extra node options for the broker process (e.g. --no-opt)\n';
  process.stderr.write(problem ? `bench: ${problem}\n${text}` : text);
  process.exit(problem ? 2 : 0);
}

const log = (message: string) => process.stderr.write(`${message}\n`);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r, ri) => {
      const line = r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
      return ri === 0 ? `${line}\n${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

interface Results {
  jwt?: IssuanceResult | null;
  workers?: WorkersResult | null;
  x509?: X509Result | null;
  propagation?: PropagationResult | null;
  verify?: VerifyResult | null;
  policy?: PolicyResult | null;
  memory?: MemoryResult | null;
  profile?: ProfileSummary | null;
  perf?: PerfSummary[];
}

/** The redis-server's pid, from INFO server (for its CPU time per request). */
async function redisProcessId(url: string): Promise<number | null> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const pid = /^process_id:(\d+)/m.exec(await client.info('server'))?.[1];
    return pid === undefined ? null : Number(pid);
  } catch {
    return null;
  } finally {
    client.disconnect();
  }
}

/**
 * The broker's YAML. Plain HTTP like the peers (`server.insecureHttp`: TLS terminated in front, as behind a
 * proxy) when this build has that switch; production mode otherwise serves HTTPS.
 */
async function brokerConfig(staticKey: Record<string, unknown> | null): Promise<string> {
  const attestors: Record<string, unknown> = { join_token: { defaultTtl: 3600 } };
  if (staticKey) attestors.static_key = staticKey;
  const server: Record<string, unknown> = { shutdownGraceMs: 2000 };
  const { configSchema } = await import('../../src/config/schema.ts');
  const probe = configSchema.safeParse({ server: { insecureHttp: true } });
  const refused =
    !probe.success && probe.error.issues.some((i) => JSON.stringify(i).includes('insecureHttp'));
  if (!refused) server.insecureHttp = true;
  return stringify({ server, attestors });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const settings: BenchSettings = args.quick
    ? { quick: true, rounds: 3, durationSec: 1 }
    : { quick: false, rounds: 5, durationSec: 8 };
  const started = Date.now();
  const stamp = new Date(started).toISOString().replace(/[:.]/g, '-');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const tmpDir = mkdtempSync(path.join(os.tmpdir(), 'writ-bench-'));
  const machine = describeMachine();
  const notes: string[] = [];
  const note = (m: string) => {
    notes.push(m);
    log(`  note: ${m}`);
  };
  const results: Results = {};
  const mode = args.profile ? 'profile' : args.quick ? 'quick' : 'full';
  log(
    `writ bench (${mode}) on ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, redis ${machine.redis}`,
  );

  let redis: RedisServer | undefined;
  let broker: BrokerProcess | undefined;
  const peers: { oidc: PeerProcess | null; floor: PeerProcess | null } = { oidc: null, floor: null };
  let rp: RelyingParty | undefined;
  let ctx: BenchContext | undefined;
  let firstBroker: BrokerProcess | undefined;
  let brokerCrashes = 0;
  const profileName = `writ-${stamp}.cpuprofile`;
  // One directory per run: node writes one profile per thread (tsx's loader runs on its own thread).
  const profileDir = path.join(tmpDir, 'cpuprofile');
  try {
    redis = await startRedisServer({ appendonly: false });
    log(`redis-server on ${redis.url} (--save '' --appendonly no)`);
    const adminToken = `bench-admin-${randomBytes(24).toString('base64url')}`;
    const probe: StaticKeyProbe = args.joinTokens
      ? { ok: false, reason: '--join-tokens was given' }
      : await probeStaticKey();
    if (!probe.ok) note(`static_key unavailable, falling back to join tokens: ${probe.reason}`);
    const configYaml = await brokerConfig(probe.ok ? probe.section : null);
    broker = await startBrokerProcess({
      name: 'writ',
      redisUrl: redis.url,
      adminToken,
      configYaml,
      tmpDir,
      nodeOptions: args.brokerNodeOptions,
      ...(args.profile ? { cpuProfile: { dir: profileDir } } : {}),
    });
    firstBroker = broker;
    log(`broker (production mode, pid ${broker.child.pid}, source ${broker.source}) on ${broker.url}`);
    const http = httpClient(broker.url, 64);
    const redisPid = await redisProcessId(redis.url);
    const workload: Workload = probe.ok
      ? staticKeyWorkload(probe.key)
      : joinTokenWorkload(() => ctx?.http ?? http, adminToken, probe.reason);
    const selectors = probe.ok ? probe.selectors : [`join_token:spiffe_id:${SPIFFE_ID}`];
    await createEntry(http, adminToken, selectors, [AUDIENCE, broker.issuer]);
    log(`workload: ${workload.note}; entry ${selectors.join(' ')} -> ${SPIFFE_ID}`);
    ctx = {
      ...settings,
      tmpDir,
      adminToken,
      redisUrl: redis.url,
      redisCpuMicros: () => (redisPid === null ? null : cpuMicros(redisPid)),
      brokerConfigYaml: configYaml,
      broker,
      http,
      workload,
      perf: null,
      log,
      note,
    };
    if (args.perf) {
      const missing = perfAvailable();
      if (missing) note(`--perf: ${missing}`);
      else ctx.perf = new PerfRecorder(tmpDir);
    }

    if (args.only.has('jwt') || args.only.has('x509')) {
      [peers.oidc, peers.floor] = await Promise.all([
        args.only.has('jwt') ? startPeer('oidc-provider') : Promise.resolve(null),
        startPeer('floor'),
      ]);
    }

    const c = ctx;
    const brokerOptions = {
      name: 'writ',
      redisUrl: redis.url,
      adminToken,
      configYaml,
      tmpDir,
      nodeOptions: args.brokerNodeOptions,
      ...(args.profile ? { cpuProfile: { dir: profileDir } } : {}),
    };
    const crashes: string[] = [];
    // A broker that died (a crash is a finding too) is reported, then replaced so the other scenarios still run.
    const replaceDeadBroker = async (): Promise<void> => {
      const dead = c.broker;
      if (!dead.child.exited()) return;
      const { exitCode, signalCode } = dead.child.proc;
      const crash = `the broker (pid ${dead.child.pid}) died (exit ${exitCode}, signal ${signalCode}); its last output:\n${dead.child.output().slice(-1500)}`;
      crashes.push(crash);
      note(crash);
      rp?.close();
      rp = undefined;
      c.http.close();
      // Same port, so the same issuer URL: the registration entry's audiences and every token stay valid.
      broker = await startBrokerProcess({
        ...brokerOptions,
        name: `writ-restart${crashes.length}`,
        port: Number(new URL(dead.url).port),
      });
      c.broker = broker;
      c.http = httpClient(broker.url, 64);
      log(`broker restarted (pid ${broker.child.pid}) on ${broker.url}`);
    };
    const run = async <K extends keyof Results>(
      name: ScenarioName & K,
      title: string,
      fn: () => Promise<NonNullable<Results[K]>>,
    ): Promise<void> => {
      if (!args.only.has(name)) return;
      log(`\n[${name}] ${title}`);
      const t = Date.now();
      for (let attempt = 1; ; attempt++) {
        try {
          await replaceDeadBroker();
          (results as Record<string, unknown>)[name] = await fn();
          break;
        } catch (e) {
          (results as Record<string, unknown>)[name] = null;
          // A crashing broker takes a moment to be reaped after its sockets reset: wait before judging.
          const code = (e as NodeJS.ErrnoException).code;
          const network =
            code === 'ECONNRESET' || code === 'ECONNREFUSED' || /socket hang up/.test(String(e));
          for (let i = 0; network && i < 30 && !c.broker.child.exited(); i++) await sleep(100);
          const died = c.broker.child.exited();
          if (died && attempt === 1 && !(e instanceof Skipped)) {
            log(
              `  ${name}: the broker died during the scenario; restarting it and running the scenario again`,
            );
            continue;
          }
          if (e instanceof Skipped) note(`${name}: null: ${e.message}`);
          else note(`${name}: null: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
          break;
        }
      }
      log(`[${name}] ${((Date.now() - t) / 1000).toFixed(1)} s`);
    };
    const needRp = async (): Promise<RelyingParty> => {
      if (rp) return rp;
      try {
        rp = await startRelyingParty(c.broker);
        return rp;
      } catch (e) {
        throw new Skipped(`the verify SDK could not connect to the broker: ${(e as Error).message}`);
      }
    };
    await run('jwt', 'JWT-SVID issuance vs oidc-provider vs express floor', () => runIssuance(c, peers));
    await run('workers', 'node:cluster, 2 workers vs 1 process', () => runWorkers(c, 2, 64));
    await run('x509', 'X.509-SVID issuance from P-256 CSRs', () => runX509(c, peers.floor, 16));
    await run('propagation', 'revocation propagation', async () => runPropagation(c, await needRp()));
    await run('verify', 'SDK verify with revocation check vs jose jwtVerify', async () =>
      runVerify(c, await needRp()),
    );
    await run('policy', 'Cedar policy decision cost', () => runPolicy(c));
    await run('memory', 'Redis memory per tracked credential', () => runMemory(c));
    if (c.broker.child.exited()) await replaceDeadBroker().catch(() => undefined);
    brokerCrashes = crashes.length;
  } catch (e) {
    note(`setup failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    rp?.close();
    ctx?.http.close();
    await stopRunner();
    await Promise.all([peers.oidc?.stop(), peers.floor?.stop()]);
    await broker?.stop();
    await redis?.stop();
  }

  const brokerReadyAfterMs = firstBroker?.readyAfterMs ?? 0;
  const sourceAtEnd = sourceDigest();
  if (firstBroker && firstBroker.source !== sourceAtEnd) {
    note(
      `the source tree changed during the run (${firstBroker.source} -> ${sourceAtEnd}): brokers started later ran newer code`,
    );
  }
  if (args.profile) {
    // The main thread's profile is the largest one; the others are tsx's loader thread.
    const found = existsSync(profileDir)
      ? readdirSync(profileDir)
          .filter((f) => f.endsWith('.cpuprofile'))
          .map((f) => ({ f, size: statSync(path.join(profileDir, f)).size }))
          .sort((a, b) => b.size - a.size)
      : [];
    if (found[0]) {
      const file = path.join(RESULTS_DIR, profileName);
      copyFileSync(path.join(profileDir, found[0].f), file);
      results.profile = summarizeProfile(file, 15, brokerReadyAfterMs);
    } else {
      note('profile: the broker wrote no .cpuprofile (did it exit cleanly?)');
      results.profile = null;
    }
  }
  if (ctx?.perf) {
    results.perf = ctx.perf.targets().flatMap((t) => ctx?.perf?.summarize(t) ?? []);
    // V8's perf map of each broker (--perf-basic-prof), read by the summaries above.
    for (const b of new Set([firstBroker, broker]))
      if (b) rmSync(`/tmp/perf-${b.child.pid}.map`, { force: true });
  }
  rmSync(tmpDir, { recursive: true, force: true });

  const summary = summarize(results, notes, brokerCrashes);
  const report = {
    version: 1,
    timestamp: new Date(started).toISOString(),
    mode,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    durationSec: round((Date.now() - started) / 1000, 1),
    machine,
    settings,
    workload: ctx ? { attestor: ctx.workload.attestor, evidence: ctx.workload.note } : null,
    source: { atStart: firstBroker?.source ?? null, atEnd: sourceAtEnd },
    brokerCrashes,
    results,
    notes,
    summary,
  };
  const file = path.join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);

  const out: string[] = [];
  out.push(printTables(results, machine.cpu, machine.cores, mode));
  out.push(`\nresults: ${path.relative(ROOT, file)} (${report.durationSec} s)`);
  if (notes.length > 0) out.push(`\nnotes:\n${notes.map((n) => `  - ${n.split('\n')[0]}`).join('\n')}`);
  out.push(JSON.stringify(summary));
  process.stdout.write(`${out.join('\n')}\n`);
}

type Figure = number | null;

function med(s: Summary | null | undefined, digits = 0): Figure {
  return s && Number.isFinite(s.median) ? round(s.median, digits) : null;
}

function summarize(r: Results, notes: string[], crashes: number): Record<string, unknown> {
  const level = (c: number) => r.jwt?.levels.find((l) => l.connections === c);
  const l64 = level(64);
  const l16 = level(16);
  const small = r.propagation?.sizes.filter((s) => s.credentials <= 100) ?? [];
  const big = r.propagation?.sizes.find((s) => s.credentials === 10_000);
  const policy = (n: number) => r.policy?.counts.find((c) => c.policies === n);
  return {
    jwt_per_s: med(l64?.writ.okPerSec),
    jwt_per_s_c16: med(l16?.writ.okPerSec),
    jwt_p99_ms_c64: med(l64?.writ.p99, 1),
    jwt_cpu_us: med(l64?.writ.cpuUsPerOk ?? null),
    jwt_main_thread_cpu_us: med(l64?.writ.mainCpuUsPerOk ?? null),
    jwt_redis_cpu_us: med(l64?.writ.redisCpuUsPerOk ?? null),
    oidc_provider_cpu_us: med(l64?.oidcProvider?.cpuUsPerOk ?? null),
    oidc_provider_per_s: med(l64?.oidcProvider?.okPerSec),
    jwt_vs_oidc_provider: med(l64?.ratioOidcProvider, 2),
    jwt_vs_oidc_provider_c16: med(l16?.ratioOidcProvider, 2),
    floor_per_s: med(l64?.floor?.okPerSec),
    jwt_vs_floor: med(l64?.ratioFloor, 3),
    jwt_attestor: r.jwt?.attestor ?? null,
    jwt_workers2_per_s: med(r.workers?.cluster.okPerSec),
    workers2_ratio: med(r.workers?.ratio, 2),
    x509_per_s: med(r.x509?.writ.okPerSec),
    x509_cpu_us: med(r.x509?.writ.cpuUsPerOk ?? null),
    verify_ratio: med(r.verify?.ratio, 3),
    propagation_p99_ms: small.length
      ? round(Math.max(...small.map((s) => Math.max(s.introspection.p99, s.sdk.p99))), 1)
      : null,
    propagation_10k_inactive_ms: big ? round(Math.max(big.introspection.p99, big.sdk.p99), 1) : null,
    propagation_10k_fanout_ms: big ? big.fanout.p99 : null,
    redis_bytes_per_credential: r.memory ? r.memory.ownTask.bytesPerCredential : null,
    redis_bytes_per_credential_shared_task: r.memory ? r.memory.sharedTask.bytesPerCredential : null,
    propagation_sdk_since_request_p99_ms: small.length
      ? round(Math.max(...small.map((s) => s.sdkSinceRequest.p99)), 1)
      : null,
    policy_us_10: med(policy(10)?.engineUs ?? null, 1),
    policy_us_100: med(policy(100)?.engineUs ?? null, 1),
    policy_us_1000: med(policy(1000)?.engineUs ?? null, 1),
    cedar_raw_us_10: med(policy(10)?.cedarUs, 1),
    cedar_raw_us_100: med(policy(100)?.cedarUs, 1),
    cedar_raw_us_1000: med(policy(1000)?.cedarUs, 1),
    broker_crashes: crashes,
    profile_top: r.profile?.functions.slice(0, 5).map((f) => `${f.name} ${round(f.percent, 1)}%`) ?? null,
    notes: notes.length,
  };
}

function printTables(r: Results, cpu: string, cores: number, mode: string): string {
  const out: string[] = [
    `\nWrit benchmark (${mode}) — ${cpu}, ${cores} cores; median (min-max) of interleaved runs`,
  ];
  if (r.jwt) {
    out.push(`\n1. JWT-SVID issuance (${r.jwt.evidence})`);
    const rows = [
      [
        'target',
        'conc',
        'ok/s',
        'p50 ms',
        'p99 ms',
        'CPU µs/op',
        'main thread µs/op',
        'Redis CPU µs/op',
        'writ ÷ target',
      ],
    ];
    for (const l of r.jwt.levels) {
      rows.push([
        'writ',
        String(l.connections),
        fmt(l.writ.okPerSec),
        fmt(l.writ.p50, 1),
        fmt(l.writ.p99, 1),
        fmt(l.writ.cpuUsPerOk),
        fmt(l.writ.mainCpuUsPerOk),
        fmt(l.writ.redisCpuUsPerOk),
        '',
      ]);
      if (l.oidcProvider) {
        rows.push([
          'oidc-provider',
          String(l.connections),
          fmt(l.oidcProvider.okPerSec),
          fmt(l.oidcProvider.p50, 1),
          fmt(l.oidcProvider.p99, 1),
          fmt(l.oidcProvider.cpuUsPerOk),
          fmt(l.oidcProvider.mainCpuUsPerOk),
          '',
          fmt(l.ratioOidcProvider, 2, 'x'),
        ]);
      }
      if (l.floor) {
        rows.push([
          'express floor',
          String(l.connections),
          fmt(l.floor.okPerSec),
          fmt(l.floor.p50, 1),
          fmt(l.floor.p99, 1),
          fmt(l.floor.cpuUsPerOk),
          fmt(l.floor.mainCpuUsPerOk),
          '',
          fmt(l.ratioFloor, 3, 'x'),
        ]);
      }
    }
    out.push(table(rows));
  }
  if (r.x509) {
    out.push(`\n2. X.509-SVID issuance, ${r.x509.csrs} pre-generated P-256 CSRs`);
    const rows = [
      [
        'target',
        'conc',
        'ok/s',
        'p50 ms',
        'p99 ms',
        'CPU µs/op',
        'main thread µs/op',
        'Redis CPU µs/op',
        'writ ÷ target',
      ],
    ];
    rows.push([
      'writ',
      String(r.x509.connections),
      fmt(r.x509.writ.okPerSec),
      fmt(r.x509.writ.p50, 1),
      fmt(r.x509.writ.p99, 1),
      fmt(r.x509.writ.cpuUsPerOk),
      fmt(r.x509.writ.mainCpuUsPerOk),
      fmt(r.x509.writ.redisCpuUsPerOk),
      '',
    ]);
    if (r.x509.floor) {
      rows.push([
        'express floor',
        String(r.x509.connections),
        fmt(r.x509.floor.okPerSec),
        fmt(r.x509.floor.p50, 1),
        fmt(r.x509.floor.p99, 1),
        fmt(r.x509.floor.cpuUsPerOk),
        fmt(r.x509.floor.mainCpuUsPerOk),
        '',
        fmt(r.x509.ratioFloor, 3, 'x'),
      ]);
    }
    out.push(table(rows));
  }
  if (r.verify) {
    const v = r.verify;
    out.push(
      `\n3. Relying-party verify (${v.revokedCredentialsLoaded} revoked credentials and ${v.endedTasksLoaded} ` +
        `ended tasks loaded; ${v.rounds} interleaved rounds of ${v.iterations})`,
    );
    out.push(
      table([
        ['path', 'ops/s', 'ratio'],
        ['SDK verify + revocation check', fmt(v.sdkOpsPerSec), fmt(v.ratio, 3, 'x')],
        ['jose jwtVerify (same token, same key)', fmt(v.joseOpsPerSec), '1x'],
      ]),
    );
  }
  if (r.propagation) {
    out.push('\n4. Revocation propagation after POST /v1/tasks/{task}/complete (ms after the 202)');
    const rows = [
      [
        'credentials',
        'repeats',
        'introspection p50/p99',
        'SDK rejects p50/p99',
        'SDK since request sent',
        '202 after',
        'fan-out done p50/p99',
      ],
    ];
    for (const s of r.propagation.sizes) {
      rows.push([
        String(s.credentials),
        String(s.repeats),
        `${s.introspection.p50} / ${s.introspection.p99}`,
        `${s.sdk.p50} / ${s.sdk.p99}`,
        `${s.sdkSinceRequest.p50} / ${s.sdkSinceRequest.p99}`,
        `${s.completeResponse.p50} / ${s.completeResponse.p99}`,
        `${s.fanout.p50} / ${s.fanout.p99}`,
      ]);
    }
    out.push(table(rows));
  }
  if (r.policy) {
    out.push(
      `\n5. Policy decision, µs/decision (${r.policy.engine ?? `engine: n/a — ${r.policy.engineReason}`}; ` +
        `${r.policy.decision})`,
    );
    const rows = [
      ['policies', 'src/policy engine', 'cedar-wasm raw (pre-parsed)', 'engine ÷ raw', 'load ms'],
    ];
    for (const c of r.policy.counts) {
      rows.push([
        String(c.policies),
        fmt(c.engineUs, 1),
        fmt(c.cedarUs, 1),
        c.ratio === null ? 'n/a' : `${c.ratio}x`,
        c.loadMs === null ? 'n/a' : String(c.loadMs),
      ]);
    }
    out.push(table(rows));
  }
  if (r.memory) {
    const m = r.memory;
    out.push(`\n6. Redis memory per tracked credential (${m.method})`);
    out.push(
      table([
        ['variant', 'credentials', 'used_memory delta', 'bytes/credential', 'issued/s'],
        [
          'own generated task each',
          String(m.ownTask.credentials),
          String(m.ownTask.deltaBytes),
          String(m.ownTask.bytesPerCredential),
          String(m.ownTask.issuedPerSec),
        ],
        [
          'tasks of 100',
          String(m.sharedTask.credentials),
          String(m.sharedTask.deltaBytes),
          String(m.sharedTask.bytesPerCredential),
          String(m.sharedTask.issuedPerSec),
        ],
      ]),
    );
    out.push('\nKeyspace after the run, by key family (MEMORY USAGE of up to 200 sampled keys)');
    const fam = [['family', 'type', 'keys', 'avg bytes', 'members', 'bytes/member']];
    for (const f of m.families.slice(0, 14)) {
      fam.push([
        f.family,
        f.type,
        String(f.keys),
        String(f.avgBytes),
        f.members === undefined ? '' : String(f.members),
        f.bytesPerMember === undefined ? '' : String(f.bytesPerMember),
      ]);
    }
    out.push(table(fam));
  }
  if (r.workers) {
    const w = r.workers;
    out.push(`\n7. node:cluster, ${w.workers} workers vs 1 process (JWT-SVID, ${w.connections} connections)`);
    out.push(
      table([
        ['broker', 'ok/s', 'p99 ms', 'CPU µs/op', 'Redis CPU µs/op', 'ratio'],
        [
          '1 process',
          fmt(w.single.okPerSec),
          fmt(w.single.p99, 1),
          fmt(w.single.cpuUsPerOk),
          fmt(w.single.redisCpuUsPerOk),
          '1x',
        ],
        [
          `${w.workers} workers`,
          fmt(w.cluster.okPerSec),
          fmt(w.cluster.p99, 1),
          fmt(w.cluster.cpuUsPerOk),
          fmt(w.cluster.redisCpuUsPerOk),
          fmt(w.ratio, 2, 'x'),
        ],
      ]),
    );
  }
  for (const p of r.perf ?? []) {
    out.push(
      `\nperf: ${p.target}, every thread of the broker, ${p.samples} samples over ${p.requests} requests: ` +
        `${round(p.cpuUsPerRequest)} µs of CPU per request`,
    );
    const rows = [['category', 'µs/req', 'event loop', 'other threads', '%']];
    for (const c of p.categories) {
      rows.push([
        c.name,
        c.totalUs.toFixed(1),
        c.mainUs.toFixed(1),
        c.otherUs.toFixed(1),
        round(c.percent, 1).toFixed(1),
      ]);
    }
    out.push(table(rows));
    const sy = [['µs/req', 'symbol']];
    for (const f of p.symbols) sy.push([f.us.toFixed(1), f.name]);
    out.push(table(sy));
  }
  if (r.profile) {
    const p = r.profile;
    out.push(
      `\nProfile: ${path.relative(ROOT, p.file)} — busy ${round(p.busyMs)} ms of ${round(p.totalMs)} ms ` +
        `(the first ${round(p.skippedMs)} ms, start-up, left out); top 15 functions by self time`,
    );
    const rows = [['self ms', '%', 'function', 'where']];
    for (const f of p.functions)
      rows.push([String(round(f.selfMs)), round(f.percent, 1).toFixed(1), f.name, f.where]);
    out.push(table(rows));
    out.push('\nSelf time by pipeline step (innermost Writ function on the stack, library work included)');
    const st = [['self ms', '%', 'step']];
    for (const f of p.stages) st.push([String(round(f.selfMs)), round(f.percent, 1).toFixed(1), f.name]);
    out.push(table(st));
    out.push('\nSelf time by package');
    const pk = [['self ms', '%', 'package']];
    for (const f of p.packages) pk.push([String(round(f.selfMs)), round(f.percent, 1).toFixed(1), f.name]);
    out.push(table(pk));
  }
  return out.join('\n');
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.stdout.write(`${JSON.stringify({ error: String(e) })}\n`);
  process.exit(1);
});
