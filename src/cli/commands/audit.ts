// `writ audit list|verify`: the hash-chained audit trail (GET /v1/admin/audit, /v1/admin/audit/verify).
import type { Command } from 'commander';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  collectPages,
  isoMillis,
  nonNegativeInt,
  out,
  positiveInt,
  printJson,
  printTable,
} from '../common.ts';

interface AuditRecord {
  seq: number;
  time: number;
  type: string;
  actor: string;
  subject?: string;
  decision?: string;
  policies?: string[];
}

interface AuditVerifyResult {
  valid: boolean;
  checked: number;
  brokenAt?: number;
  reason?: string;
}

interface AuditListOpts extends ConnectionOpts {
  after?: number;
  limit?: number;
  all?: boolean;
}

export function auditCommands(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit trail');

  addConnection(
    audit
      .command('list')
      .description('list audit records, oldest first')
      .option('--after <seq>', 'records after this sequence number', nonNegativeInt)
      .option('--limit <n>', 'records per page (1-1000, default 100)', positiveInt)
      .option('--all', 'follow the cursor to the newest record'),
  ).action(async (opts: AuditListOpts) => {
    const client = clientOf(opts);
    const page = await collectPages(opts.all ?? false, async (cursor) => {
      const res = await client.call<{ records: AuditRecord[]; next: number | null }>(
        'GET',
        '/v1/admin/audit',
        {
          query: { after: cursor ?? opts.after, limit: opts.limit },
        },
      );
      return { items: res.body.records, next: res.body.next === null ? null : String(res.body.next) };
    });
    if (opts.json) {
      printJson({ records: page.items, next: page.next === null ? null : Number(page.next) });
      return;
    }
    printTable(
      ['seq', 'time', 'type', 'actor', 'subject', 'decision', 'policies'],
      page.items.map((r) => [
        r.seq,
        isoMillis(r.time),
        r.type,
        r.actor,
        r.subject,
        r.decision,
        r.policies?.join(','),
      ]),
    );
    if (page.next !== null) process.stderr.write(`(more: pass --after ${page.next}, or --all)\n`);
  });

  addConnection(
    audit.command('verify').description('recompute the hash chain; exit 1 and name the first broken link'),
  ).action(async (opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<AuditVerifyResult>('GET', '/v1/admin/audit/verify');
    const r = res.body;
    if (opts.json) printJson(r);
    else if (r.valid) out(`audit chain valid: ${r.checked} record(s) checked`);
    if (!r.valid) {
      if (!opts.json) {
        process.stderr.write(
          `audit chain BROKEN at record ${r.brokenAt ?? '?'}: ${r.reason ?? 'no reason given'} (${r.checked} record(s) before it hold)\n`,
        );
      }
      process.exitCode = 1;
    }
  });
}
