// Policy test fixtures: throwaway policy directories, a request builder and fixed instants.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { DecisionRequest } from '../../../src/policy/index.ts';

const made: string[] = [];

afterEach(async () => {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh directory holding `files` (name -> text), removed after the test. */
export async function policyDir(files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'writ-policy-'));
  made.push(dir);
  await writeFiles(dir, files);
  return dir;
}

export async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

/** Tuesday 2026-01-06 at `hour`:00 UTC, in epoch seconds. */
export function tuesdayAt(hour: number): number {
  return Date.UTC(2026, 0, 6, hour) / 1000;
}

type Overrides = {
  principal?: Partial<DecisionRequest['principal']>;
  action?: string;
  resource?: DecisionRequest['resource'];
  context?: Partial<DecisionRequest['context']>;
};

/** A JWT-SVID issuance for `https://api.example` at 10:00 UTC from 127.0.0.1, with overrides. */
export function request(o: Overrides = {}): DecisionRequest {
  return {
    principal: {
      spiffeId: 'spiffe://writ.local/ci/deploy',
      trustDomain: 'writ.local',
      attestor: 'join_token',
      selectors: ['join_token:spiffe_id:spiffe://writ.local/ci/deploy'],
      legacy: false,
      task: 'task-1',
      posture: {},
      ...o.principal,
    },
    action: o.action ?? 'issue_jwt',
    resource: o.resource ?? { type: 'Audience', id: 'https://api.example' },
    context: {
      sourceIp: '127.0.0.1',
      now: tuesdayAt(10),
      ttl: 300,
      credentialType: 'jwt',
      legacy: false,
      ...o.context,
    },
  };
}
