// What every command shares: the connection options, option parsers, and the readable and JSON output.
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { Client, printable, UsageError } from './client.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** The options `addConnection` defines, as commander hands them to an action. */
export interface ConnectionOpts {
  url: string;
  token?: string;
  otp?: string;
  timeout: number;
  json?: boolean;
}

/**
 * `--url`, `--timeout`, `--json`, and for admin commands `--token` and `--otp`. The token's value comes from
 * the environment by preference (a flag is visible to other local users in the process list) and is never
 * shown, not even in `--help`.
 */
export function addConnection(cmd: Command, opts: { admin: boolean } = { admin: true }): Command {
  cmd.addOption(new Option('--url <url>', 'broker URL').env('WRIT_URL').default(DEFAULT_URL));
  if (opts.admin) {
    cmd.addOption(
      new Option('--token <token>', 'admin token (prefer the env variable)').env('WRIT_ADMIN_TOKEN'),
    );
    cmd.addOption(
      new Option('--otp <code>', 'TOTP code for privileged operations (sent as X-Writ-OTP)').env('WRIT_OTP'),
    );
  }
  cmd.addOption(
    new Option('--timeout <seconds>', 'give up after this many seconds').argParser(positiveInt).default(30),
  );
  cmd.option('--json', 'print the raw JSON answer');
  return cmd;
}

export function clientOf(opts: ConnectionOpts): Client {
  return new Client({ url: opts.url, token: opts.token, otp: opts.otp, timeoutMs: opts.timeout * 1000 });
}

// ---- option parsers (a bad value is a usage error: commander reports it and the CLI exits 2)

export function positiveInt(value: string): number {
  if (!/^[0-9]{1,10}$/.test(value) || Number(value) < 1)
    throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}

export function nonNegativeInt(value: string): number {
  if (!/^[0-9]{1,15}$/.test(value)) throw new InvalidArgumentError('expected a non-negative integer');
  return Number(value);
}

/** For repeatable options: `--selector a --selector b` -> ['a', 'b']. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `JSON` inline, `@file`, or `@-` (stdin): a JSON value. */
export function readJsonArg(value: string, what: string): unknown {
  let text = value;
  if (value.startsWith('@')) {
    const file = value.slice(1);
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (e) {
      throw new UsageError(`${what}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${what} is not valid JSON (pass JSON inline, @file or @- for stdin)`);
  }
}

// ---- output

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

type Cell = string | number | boolean | null | undefined;

function cell(v: Cell): string {
  if (v === null || v === undefined || v === '') return '-';
  return printable(String(v)).replace(/\n/g, ' ');
}

/** A table with a header row; `(none)` when empty. */
export function printTable(header: string[], rows: Cell[][]): void {
  if (rows.length === 0) {
    out('(none)');
    return;
  }
  const text = rows.map((r) => r.map(cell));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  out([line(header.map((h) => h.toUpperCase())), ...text.map(line)].join('\n'));
}

/** `label: value` lines, aligned; undefined values are left out. */
export function printFields(fields: [string, Cell | Cell[]][]): void {
  const shown = fields.filter(([, v]) => v !== undefined);
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  out(
    shown
      .map(
        ([k, v]) =>
          `${`${k}:`.padEnd(width + 1)} ${Array.isArray(v) ? v.map(cell).join(', ') || '-' : cell(v)}`,
      )
      .join('\n'),
  );
}

/** Epoch seconds as ISO 8601 (UTC, no milliseconds). */
export function isoSeconds(s: unknown): string | undefined {
  if (typeof s !== 'number' || !Number.isFinite(s)) return undefined;
  return new Date(s * 1000).toISOString().replace('.000Z', 'Z');
}

/** Epoch milliseconds as ISO 8601 (UTC). */
export function isoMillis(ms: unknown): string | undefined {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return undefined;
  return new Date(ms).toISOString();
}

/** Follows `next` cursors while `all`; a cursor seen twice stops the walk (a broker bug must not loop). */
export async function collectPages<T>(
  all: boolean,
  fetchPage: (cursor: string | undefined) => Promise<{ items: T[]; next: string | null }>,
): Promise<{ items: T[]; next: string | null }> {
  const first = await fetchPage(undefined);
  if (!all) return first;
  const items = [...first.items];
  const seen = new Set<string>();
  let next = first.next;
  while (next !== null && !seen.has(next)) {
    seen.add(next);
    const page = await fetchPage(next);
    items.push(...page.items);
    next = page.next;
  }
  return { items, next: null };
}
