// Selectors: `<attestor>:<key>:<value>`, the verified facts attestation yields and entries match on.
import { z } from 'zod';

// The value may contain ':' (refs, URLs); no control characters or whitespace at the ends.
export const SELECTOR_PATTERN =
  /^[a-z0-9_]{1,64}:[A-Za-z0-9_.-]{1,64}:[^\s\p{Cc}](?:[^\p{Cc}]{0,2094}[^\s\p{Cc}])?$/u;

export const selectorSchema = z
  .string()
  .max(2200)
  .regex(SELECTOR_PATTERN, 'a selector is <attestor>:<key>:<value> (attestor [a-z0-9_], key [A-Za-z0-9_.-])');

export function selectorAttestor(selector: string): string {
  return selector.slice(0, selector.indexOf(':'));
}
