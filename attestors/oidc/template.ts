// Task templates of the oidc attestor: `gitlab:{project_path}/{pipeline_id}`, expanded over verified claims.
import type { JWTPayload } from 'jose';
import { AttestationError } from '../../src/attestation/types.ts';
import { isTaskId } from '../../src/lifecycle/task-id.ts';

export type TemplatePart = { literal: string } | { claim: string };

export interface TaskTemplate {
  source: string;
  /** The literal namespace before the first ':' (the facade admits an attestor's tasks in one namespace). */
  namespace: string;
  /** The literal text before the first placeholder, namespace included. */
  literalPrefix: string;
  parts: TemplatePart[];
}

const NAMESPACE = /^([a-z0-9_]{1,32}):/;
const CLAIM = /^[A-Za-z0-9_.-]{1,128}$/;

/** Parses a template; returns a problem (for the config error) instead of throwing. */
export function parseTaskTemplate(source: string): TaskTemplate | string {
  const ns = NAMESPACE.exec(source);
  if (!ns) return 'a task template starts with a literal namespace, e.g. gitlab:{project_path}/{pipeline_id}';
  const parts: TemplatePart[] = [];
  let rest = source;
  while (rest.length > 0) {
    const open = rest.indexOf('{');
    const close = rest.indexOf('}');
    if (open < 0) {
      if (close >= 0) return 'unbalanced } in the task template';
      parts.push({ literal: rest });
      break;
    }
    if (close >= 0 && close < open) return 'unbalanced } in the task template';
    if (open > 0) parts.push({ literal: rest.slice(0, open) });
    const end = rest.indexOf('}', open);
    if (end < 0) return 'unbalanced { in the task template';
    const claim = rest.slice(open + 1, end);
    if (!CLAIM.test(claim)) return `invalid claim name in the task template: {${claim.slice(0, 64)}}`;
    parts.push({ claim });
    rest = rest.slice(end + 1);
  }
  if (!parts.some((p) => 'claim' in p)) return 'a task template names at least one {claim}';
  const first = parts[0];
  const literalPrefix = first && 'literal' in first ? first.literal : '';
  if (!literalPrefix.startsWith(`${ns[1]}:`)) return 'the namespace of a task template must be literal';
  // Literal text must itself be valid task id text, so that only claim values can make an id invalid.
  const literals = parts.map((p) => ('literal' in p ? p.literal : 'x')).join('');
  if (!isTaskId(literals))
    return 'the literal text of the task template has characters a task id cannot hold';
  return { source, namespace: ns[1]!, literalPrefix, parts };
}

/**
 * Expands a template over verified claims. Only string and non-negative integer claims expand; the result
 * must be a valid task id in the template's namespace, else the attestation fails.
 */
export function expandTaskTemplate(template: TaskTemplate, claims: JWTPayload): string {
  let out = '';
  for (const part of template.parts) {
    if ('literal' in part) {
      out += part.literal;
      continue;
    }
    const value = claims[part.claim];
    if (typeof value === 'string' && value !== '') out += value;
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) out += String(value);
    else
      throw new AttestationError(
        `the token's ${part.claim} claim cannot name the task (a string or number is needed)`,
      );
  }
  if (!isTaskId(out) || !out.startsWith(`${template.namespace}:`)) {
    throw new AttestationError("the token's claims do not make a valid task id");
  }
  return out;
}
