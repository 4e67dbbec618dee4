// `writ tasks list|get` and `writ credentials list|get`: what the broker tracks (GET /v1/admin/tasks, ...).
import { type Command, InvalidArgumentError } from 'commander';
import { type Client, seg } from '../client.ts';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  collectPages,
  isoSeconds,
  positiveInt,
  printFields,
  printJson,
  printTable,
} from '../common.ts';

interface Task {
  id: string;
  owner: string;
  origin?: string;
  createdAt: number;
  deadline: number;
  status: string;
  endedAt?: number;
  endReason?: string;
  credentials?: number;
}

interface Credential {
  id: string;
  type: string;
  spiffeId: string;
  task: string;
  attestor: string;
  audience: string[];
  issuedAt: number;
  expiresAt: number;
  legacy: boolean;
  status: string;
  revokedAt?: number;
  revokedReason?: string;
  taskStatus: string | null;
}

interface Page<T> {
  items: T[];
  next: string | null;
}

interface PageOpts extends ConnectionOpts {
  limit?: number;
  all?: boolean;
}

interface TaskListOpts extends PageOpts {
  status?: string;
  owner?: string;
}

interface CredentialListOpts extends PageOpts {
  task?: string;
  spiffeId?: string;
  spiffeIdPrefix?: string;
  attestor?: string;
  status?: string;
}

function oneOf(values: readonly string[]) {
  return (value: string): string => {
    if (!values.includes(value)) throw new InvalidArgumentError(`expected one of ${values.join(', ')}`);
    return value;
  };
}

function pageOptions(cmd: Command): Command {
  return addConnection(
    cmd
      .option('--limit <n>', 'items per page (1-1000, default 100)', positiveInt)
      .option('--all', 'follow the cursor to the last page'),
  );
}

async function listAll<T>(
  client: Client,
  path: string,
  opts: PageOpts,
  filter: Record<string, string | undefined>,
): Promise<Page<T>> {
  return collectPages(opts.all ?? false, async (cursor) => {
    const res = await client.call<Page<T>>('GET', path, {
      query: { ...filter, limit: opts.limit, cursor },
    });
    return res.body;
  });
}

export function taskCommands(program: Command): void {
  const tasks = program.command('tasks').description('tasks: every credential belongs to one');

  pageOptions(
    tasks
      .command('list')
      .description('list tasks')
      .option(
        '--status <status>',
        'active, completed, expired or revoked',
        oneOf(['active', 'completed', 'expired', 'revoked']),
      )
      .option('--owner <spiffe-id>', 'tasks opened by this SPIFFE ID'),
  ).action(async (opts: TaskListOpts) => {
    const page = await listAll<Task>(clientOf(opts), '/v1/admin/tasks', opts, {
      status: opts.status,
      owner: opts.owner,
    });
    if (opts.json) {
      printJson(page);
      return;
    }
    printTable(
      ['id', 'owner', 'status', 'created', 'deadline', 'ended'],
      page.items.map((t) => [
        t.id,
        t.owner,
        t.endReason ? `${t.status} (${t.endReason})` : t.status,
        isoSeconds(t.createdAt),
        isoSeconds(t.deadline),
        isoSeconds(t.endedAt),
      ]),
    );
    if (page.next !== null) process.stderr.write('(more: pass --all, or a larger --limit)\n');
  });

  addConnection(tasks.command('get').argument('<id>', 'task id').description('show one task')).action(
    async (id: string, opts: ConnectionOpts) => {
      const res = await clientOf(opts).call<Task>('GET', `/v1/admin/tasks/${seg(id)}`);
      if (opts.json) {
        printJson(res.body);
        return;
      }
      const t = res.body;
      printFields([
        ['id', t.id],
        ['owner', t.owner],
        ['origin', t.origin],
        ['status', t.status],
        ['created', isoSeconds(t.createdAt)],
        ['deadline', isoSeconds(t.deadline)],
        ['ended', isoSeconds(t.endedAt)],
        ['end reason', t.endReason],
        ['credentials', t.credentials],
      ]);
    },
  );
}

export function credentialCommands(program: Command): void {
  const credentials = program.command('credentials').description('issued credentials and their status');

  pageOptions(
    credentials
      .command('list')
      .description('list credentials')
      .option('--task <task>', 'of this task')
      .option('--spiffe-id <id>', 'of this SPIFFE ID')
      .option('--spiffe-id-prefix <prefix>', 'of SPIFFE IDs under this path')
      .option('--attestor <name>', 'vouched for by this attestor')
      .option('--status <status>', 'active, expired or revoked', oneOf(['active', 'expired', 'revoked'])),
  ).action(async (opts: CredentialListOpts) => {
    const page = await listAll<Credential>(clientOf(opts), '/v1/admin/credentials', opts, {
      task: opts.task,
      spiffeId: opts.spiffeId,
      spiffeIdPrefix: opts.spiffeIdPrefix,
      attestor: opts.attestor,
      status: opts.status,
    });
    if (opts.json) {
      printJson(page);
      return;
    }
    printTable(
      ['id', 'type', 'spiffe id', 'task', 'status', 'issued', 'expires'],
      page.items.map((c) => [
        c.id,
        c.legacy ? `${c.type} (legacy)` : c.type,
        c.spiffeId,
        c.task,
        c.revokedReason ? `${c.status} (${c.revokedReason})` : c.status,
        isoSeconds(c.issuedAt),
        isoSeconds(c.expiresAt),
      ]),
    );
    if (page.next !== null) process.stderr.write('(more: pass --all, or a larger --limit)\n');
  });

  addConnection(
    credentials
      .command('get')
      .argument('<id>', 'credential id (jti or serial)')
      .description('show one credential'),
  ).action(async (id: string, opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<Credential>('GET', `/v1/admin/credentials/${seg(id)}`);
    if (opts.json) {
      printJson(res.body);
      return;
    }
    const c = res.body;
    printFields([
      ['id', c.id],
      ['type', c.type],
      ['spiffe id', c.spiffeId],
      ['task', `${c.task}${c.taskStatus ? ` (${c.taskStatus})` : ''}`],
      ['attestor', c.attestor],
      ['audience', c.audience],
      ['legacy', c.legacy],
      ['status', c.status],
      ['issued', isoSeconds(c.issuedAt)],
      ['expires', isoSeconds(c.expiresAt)],
      ['revoked', isoSeconds(c.revokedAt)],
      ['reason', c.revokedReason],
    ]);
  });
}
