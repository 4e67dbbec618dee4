// Source positions: Cedar reports UTF-8 byte offsets; operators read `file:line:column`.
import type { DetailedError } from './cedar.ts';
import type { PolicyProblem } from './errors.ts';

export interface SourceFile {
  /** The path shown in messages. */
  readonly path: string;
  readonly text: string;
}

export interface Position {
  line: number;
  column: number;
}

/** 1-based line and column (in characters) of a UTF-8 byte offset into `text`. */
export function positionAt(text: string, byteOffset: number): Position {
  const prefix = Buffer.from(text, 'utf8').subarray(0, Math.max(0, byteOffset)).toString('utf8');
  const lines = prefix.split('\n');
  const last = lines[lines.length - 1] ?? '';
  return { line: lines.length, column: [...last].length + 1 };
}

/** 1-based position of a character index into `text`. */
export function positionOfIndex(text: string, index: number): Position {
  return positionAt(text, Buffer.byteLength(text.slice(0, index), 'utf8'));
}

/** Cedar's prefixes and generated policy names say nothing an operator needs. */
export function describeCedarError(
  e: DetailedError,
  idOf?: (generated: string) => string | undefined,
): string {
  const rename = (s: string): string =>
    s
      .replace(/^failed to parse (?:policies|schema) from string: (?:error parsing schema: )?/, '')
      .replace(/for policy `(policy\d+)`, /g, '')
      .replace(/ for Writ::Action::"(?:[^"\\]|\\.)*"/g, '')
      .replace(/`(policy\d+)`/g, (whole, generated: string) => {
        const id = idOf?.(generated);
        return id === undefined ? whole : `"${id}"`;
      });
  const parts = [rename(e.message)];
  const label = e.sourceLocations?.find((l) => l.label)?.label;
  if (label) parts.push(`(${label})`);
  if (e.help) parts.push(`(${rename(e.help)})`);
  for (const r of e.related ?? []) parts.push(`; ${rename(r.message)}`);
  return parts.join(' ');
}

/** A problem located in one file, at the first source location Cedar gave. */
export function problemAt(file: SourceFile, byteOffset: number | undefined, message: string): PolicyProblem {
  if (byteOffset === undefined) return { file: file.path, message };
  const { line, column } = positionAt(file.text, byteOffset);
  return { file: file.path, line, column, message };
}
