// From a Writ request to a Cedar request: checked, typed as the schema says, and only what policies read.
import { isIP } from 'node:net';
import type { PostureValue } from '../attestation/types.ts';
import type { EntityJson, StatefulAuthorizationCall } from './cedar.ts';
import { type CompiledPolicySet, NAMESPACE, type ResourceType } from './loader.ts';

export type CredentialType = 'jwt' | 'x509';
/** A caller-provided fact at /v1/authorize; rendered `key=value` in `context.extra`. */
export type FactValue = string | number | boolean;

export interface DecisionRequest {
  principal: {
    spiffeId: string;
    trustDomain: string;
    attestor: string;
    selectors: readonly string[];
    legacy: boolean;
    task: string;
    posture: Readonly<Record<string, PostureValue>>;
  };
  /** `issue_jwt`, `issue_x509`, or a relying party's action declared in the policy directory's schema. */
  action: string;
  /** `Audience` (the audience URI) at issuance, `Resource` at /v1/authorize. */
  resource: { type: ResourceType; id: string };
  context: {
    /** The caller's address; an IPv4-mapped IPv6 address is read as the IPv4 one. */
    sourceIp: string;
    /** Epoch seconds; `hour_utc` and `weekday` are derived from it. */
    now: number;
    /** Seconds: the lifetime asked for at issuance, the lifetime left at /v1/authorize. */
    ttl: number;
    credentialType: CredentialType;
    legacy: boolean;
    extra?: Readonly<Record<string, FactValue>> | undefined;
  };
}

export const MAX_FACTS = 64;
const FACT_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_FACT_VALUE = 1024;

type CedarRequest = Omit<StatefulAuthorizationCall, 'preparsedPolicySetId'>;
type CedarValue = EntityJson['attrs'][string];

/** The Cedar request, or why there is none. Attributes no policy reads are left out: each one costs. */
export function buildCedarRequest(set: CompiledPolicySet, req: DecisionRequest): CedarRequest | string {
  const action = set.actions.get(req.action);
  if (!action || action.resourceTypes.length === 0) return `unknown action "${clip(req.action)}"`;
  if (!action.resourceTypes.includes(req.resource.type)) {
    return `action "${clip(req.action)}" does not apply to ${NAMESPACE}::${req.resource.type}`;
  }
  const { principal: p, context: c } = req;
  if (typeof p.spiffeId !== 'string' || p.spiffeId === '') return 'principal.spiffeId is required';
  if (!Array.isArray(p.selectors) || !p.selectors.every((s) => typeof s === 'string')) {
    return 'principal.selectors must be strings';
  }
  const sourceIp = normalizeIp(c.sourceIp);
  if (sourceIp === undefined) return 'context.sourceIp is not an IP address';
  if (!Number.isSafeInteger(c.now) || c.now < 0) return 'context.now must be whole epoch seconds';
  if (!Number.isSafeInteger(c.ttl) || c.ttl < 0) return 'context.ttl must be a whole number of seconds';
  if (c.credentialType !== 'jwt' && c.credentialType !== 'x509')
    return 'context.credentialType must be jwt or x509';
  const posture = facts(p.posture, 'principal.posture');
  if (typeof posture === 'string') return posture;
  const extra = facts(c.extra ?? {}, 'context.extra');
  if (typeof extra === 'string') return extra;

  const read = set.attributesRead;
  const date = new Date(c.now * 1000);
  const attrs = pick(read, {
    spiffe_id: p.spiffeId,
    trust_domain: p.trustDomain,
    attestor: p.attestor,
    selectors: [...p.selectors],
    legacy: p.legacy,
    task: p.task,
    posture,
  });
  const context = pick(read, {
    source_ip: { __extn: { fn: 'ip', arg: sourceIp } },
    now: c.now,
    hour_utc: date.getUTCHours(),
    weekday: date.getUTCDay(),
    ttl: c.ttl,
    credential_type: c.credentialType,
    legacy: c.legacy,
    extra,
  });
  const principal = { type: `${NAMESPACE}::Workload`, id: p.spiffeId };
  const actionUid = { type: `${NAMESPACE}::Action`, id: action.name };
  const entities: EntityJson[] = [{ uid: principal, attrs, parents: [] }];
  // Without a schema at evaluation time, `action in <group>` needs the action's groups spelled out.
  if (set.namesActionGroups && action.ancestors.length > 0) {
    entities.push({
      uid: actionUid,
      attrs: {},
      parents: action.ancestors.map((id) => ({ type: `${NAMESPACE}::Action`, id })),
    });
  }
  return {
    principal,
    action: actionUid,
    resource: { type: `${NAMESPACE}::${req.resource.type}`, id: req.resource.id },
    context,
    entities,
    validateRequest: false,
  };
}

/** `key=value` strings: a set of facts any schema can hold, whatever keys an attestor or caller uses. */
function facts(record: Readonly<Record<string, FactValue>>, label: string): string[] | string {
  if (typeof record !== 'object' || record === null) return `${label} must be an object`;
  const entries = Object.entries(record);
  if (entries.length > MAX_FACTS) return `${label} has more than ${MAX_FACTS} entries`;
  const out: string[] = [];
  for (const [key, value] of entries) {
    if (!FACT_KEY.test(key)) return `${label} key "${clip(key)}" must be 1-64 letters, digits or _ . : -`;
    const ok =
      (typeof value === 'string' && value.length <= MAX_FACT_VALUE) ||
      (typeof value === 'number' && Number.isFinite(value)) ||
      typeof value === 'boolean';
    if (!ok)
      return `${label}.${key} must be a string (at most ${MAX_FACT_VALUE}), a finite number or a boolean`;
    out.push(`${key}=${String(value)}`);
  }
  return out;
}

function normalizeIp(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  const ip = raw.split('%')[0] ?? ''; // a zone id means nothing to a policy
  const kind = isIP(ip);
  if (kind === 0) return undefined;
  // An IPv4-mapped IPv6 address, however it is spelled (::ffff:a.b.c.d, ::ffff:a42:101, 0:0:0:0:0:ffff:...),
  // is the IPv4 address: IPv4 ranges in policies must match it.
  return kind === 6 ? (ipv4Mapped(ip) ?? ip) : ip;
}

/** The IPv4 address an IPv4-mapped IPv6 address stands for, else undefined. `ip` is a valid IPv6 address. */
function ipv4Mapped(ip: string): string | undefined {
  let text = ip.toLowerCase();
  const dotted = /(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (dotted) {
    const o = dotted[1]!.split('.').map(Number);
    const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
    text = `${text.slice(0, dotted.index)}${hex(o[0]!, o[1]!)}:${hex(o[2]!, o[3]!)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  const n = groups.map((g) => Number.parseInt(g, 16));
  if (n.slice(0, 5).some((g) => g !== 0) || n[5] !== 0xffff) return undefined;
  return [n[6]! >> 8, n[6]! & 255, n[7]! >> 8, n[7]! & 255].join('.');
}

function pick(read: ReadonlySet<string>, all: Record<string, CedarValue>): Record<string, CedarValue> {
  const out: Record<string, CedarValue> = {};
  for (const [key, value] of Object.entries(all)) if (read.has(key)) out[key] = value;
  return out;
}

function clip(s: unknown): string {
  return String(s).slice(0, 64);
}
