// Reads a V8 .cpuprofile (node --cpu-prof) and ranks functions and packages by self time.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  where: string;
  selfMs: number;
  /** Share of the busy (non-idle) samples, percent. */
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** Start-up left out of the figures, ms. */
  skippedMs: number;
  totalMs: number;
  busyMs: number;
  functions: SelfTime[];
  packages: SelfTime[];
  /**
   * Self time charged to the innermost Writ function (src/, attestors/) on the stack: what each step of the
   * pipeline costs with the library work it causes. Samples with no Writ frame are charged to the package.
   */
  stages: SelfTime[];
}

const OWN_CODE = /\/(src|attestors)\//;
/** Writ's own wrappers that say nothing about the step (the store's timeout and error mapping). */
const WRAPPERS = new Set(['#call']);

/** `node_modules/jose/dist/...` -> `jose`; `/src/issuance/x.ts` -> `src/issuance`; node internals as `node:`. */
export function packageOf(url: string): string {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return 'node: (core)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const m = /\/(src|attestors|scripts)\/(.+)\/[^/]+$/.exec(url);
  if (m) return `${m[1]}/${m[2]}`;
  const f = /\/(src|attestors|scripts)\/[^/]+$/.exec(url);
  return f ? (f[1] ?? url) : url;
}

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const src = url.search(/\/(src|attestors|scripts)\//);
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

/** `skipMs`: leave out the first milliseconds of the profile (the process's start: module loading, JIT). */
export function summarizeProfile(file: string, top = 15, skipMs = 0): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Arrow functions (`() => this.#redis.get(...)`) are anonymous: the named function around them says more.
  const stageOf = (id: number): string => {
    let anonymous: string | undefined;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame;
      if (!f || !OWN_CODE.test(f.url)) continue;
      if (f.functionName && !WRAPPERS.has(f.functionName)) return `${f.functionName} ${shortUrl(f.url)}`;
      anonymous ??= `(anonymous) ${shortUrl(f.url)}`;
    }
    if (anonymous) return anonymous;
    const leaf = byId.get(id)?.callFrame;
    if (!leaf) return '(unknown)';
    return leaf.url ? `(no Writ frame) ${packageOf(leaf.url)}` : leaf.functionName;
  };
  const stages = new Map<string, number>();
  const selfUs = new Map<number, number>();
  // A sample's time is the delta to the next sample (what DevTools shows as self time).
  let elapsedUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    elapsedUs += profile.timeDeltas[i] ?? 0;
    if (elapsedUs < skipMs * 1000) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const fns = new Map<string, { name: string; where: string; us: number }>();
  const pkgs = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const name = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${name}\u0000${where}`;
    const entry = fns.get(key) ?? { name, where, us: 0 };
    entry.us += us;
    fns.set(key, entry);
    const pkg = url ? packageOf(url) : name.startsWith('(') ? name : '(native/vm)';
    pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
    const stage = stageOf(id);
    stages.set(stage, (stages.get(stage) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number) => (busy > 0 ? (100 * us) / busy : 0);
  const functions = [...fns.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((f) => ({ name: f.name, where: f.where, selfMs: f.us / 1000, percent: pct(f.us) }));
  const packages = [...pkgs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, where: '', selfMs: us / 1000, percent: pct(us) }));
  const stageList = [...stages.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, where: '', selfMs: us / 1000, percent: pct(us) }));
  return {
    file,
    skippedMs: skipMs,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    functions,
    packages,
    stages: stageList,
  };
}
