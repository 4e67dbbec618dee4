// The peer (oidc-provider) and the floor (bare express), each in its own Node process like the broker.
import * as path from 'node:path';
import { OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_RESOURCE } from '../peers/oidc-constants.ts';
import type { LoadTarget } from './measure.ts';
import { type Child, mainThreadCpuMicros, startChild, treeCpuMicros } from './procs.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

export interface PeerProcess {
  child: Child;
  url: string;
  stop(): Promise<void>;
}

export async function startPeer(name: 'oidc-provider' | 'floor'): Promise<PeerProcess> {
  const child = startChild(
    name,
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, `scripts/bench/peers/${name}.ts`), '0'],
    { env: { ...process.env, NODE_ENV: 'production' }, cwd: ROOT },
  );
  const ready = await child.readyLine(30_000);
  return { child, url: `http://127.0.0.1:${String(ready.port)}`, stop: () => child.stop(5_000) };
}

export function oidcTarget(peer: PeerProcess): LoadTarget {
  const basic = Buffer.from(`${OIDC_CLIENT_ID}:${OIDC_CLIENT_SECRET}`).toString('base64');
  return {
    name: 'oidc-provider',
    url: peer.url,
    method: 'POST',
    path: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: OIDC_RESOURCE }).toString(),
    cpuMicros: () => treeCpuMicros(peer.child.pid),
    mainThreadCpuMicros: () => mainThreadCpuMicros(peer.child.pid),
  };
}

export function floorTarget(peer: PeerProcess, pathName: string, body: string): LoadTarget {
  return {
    name: 'floor',
    url: peer.url,
    method: 'POST',
    path: pathName,
    headers: { 'content-type': 'application/json' },
    body,
    cpuMicros: () => treeCpuMicros(peer.child.pid),
    mainThreadCpuMicros: () => mainThreadCpuMicros(peer.child.pid),
  };
}
