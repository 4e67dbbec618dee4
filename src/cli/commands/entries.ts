// `writ entries list|get|create|update|delete`: registration entries (/v1/admin/entries).
import { type Command, InvalidArgumentError } from 'commander';
import { type Client, seg, UsageError } from '../client.ts';
import {
  addConnection,
  type ConnectionOpts,
  clientOf,
  collect,
  isoSeconds,
  out,
  positiveInt,
  printFields,
  printJson,
  printTable,
} from '../common.ts';

interface Entry {
  id: string;
  spiffeId: string;
  selectors: string[];
  audiences?: string[];
  jwtTtl?: number;
  x509Ttl?: number;
  taskDeadline?: number;
  createdAt: number;
  updatedAt: number;
}

/** The fields the API takes (PUT replaces all of them). */
type EntryInput = Omit<Entry, 'id' | 'createdAt' | 'updatedAt'>;

interface EntryOpts extends ConnectionOpts {
  spiffeId?: string;
  selector?: string[];
  audience?: string[];
  jwtTtl?: number;
  x509Ttl?: number;
  taskDeadline?: number;
  unset?: string[];
}

const UNSETTABLE = ['audiences', 'jwt-ttl', 'x509-ttl', 'task-deadline'] as const;

function entryOptions(cmd: Command, forUpdate: boolean): Command {
  cmd
    .option(`--spiffe-id <id>`, 'the SPIFFE ID the entry grants')
    .option(
      '--selector <selector>',
      'attested selector <attestor>:<key>:<value>; repeat for more (all must match)',
      collect,
    )
    .option('--audience <aud>', 'allowed audience; repeat for more (default: any)', collect)
    .option('--jwt-ttl <seconds>', 'cap on JWT-SVID lifetimes', positiveInt)
    .option('--x509-ttl <seconds>', 'cap on X.509-SVID lifetimes', positiveInt)
    .option('--task-deadline <seconds>', 'deadline of tasks this entry opens', positiveInt);
  if (forUpdate) {
    cmd.option(
      '--unset <field>',
      `remove a field, one of ${UNSETTABLE.join(', ')}; repeat for more`,
      (value: string, previous: string[] | undefined) => {
        if (!(UNSETTABLE as readonly string[]).includes(value))
          throw new InvalidArgumentError(`expected one of ${UNSETTABLE.join(', ')}`);
        return collect(value, previous);
      },
    );
  }
  return addConnection(cmd);
}

function inputFrom(opts: EntryOpts, base?: EntryInput): EntryInput {
  const spiffeId = opts.spiffeId ?? base?.spiffeId;
  const selectors = opts.selector ?? base?.selectors;
  if (spiffeId === undefined) throw new UsageError('--spiffe-id is required');
  if (selectors === undefined || selectors.length === 0)
    throw new UsageError('at least one --selector is required');
  const unset = new Set(opts.unset ?? []);
  const pick = <K extends 'audiences' | 'jwtTtl' | 'x509Ttl' | 'taskDeadline'>(
    key: K,
    flag: (typeof UNSETTABLE)[number],
    given: EntryInput[K] | undefined,
  ): Partial<Pick<EntryInput, K>> => {
    if (given !== undefined && unset.has(flag))
      throw new UsageError(`--unset ${flag} conflicts with setting it`);
    const value = given ?? (unset.has(flag) ? undefined : base?.[key]);
    return value === undefined ? {} : ({ [key]: value } as Partial<Pick<EntryInput, K>>);
  };
  return {
    spiffeId,
    selectors,
    ...pick('audiences', 'audiences', opts.audience),
    ...pick('jwtTtl', 'jwt-ttl', opts.jwtTtl),
    ...pick('x509Ttl', 'x509-ttl', opts.x509Ttl),
    ...pick('taskDeadline', 'task-deadline', opts.taskDeadline),
  };
}

function printEntry(e: Entry): void {
  printFields([
    ['id', e.id],
    ['spiffe id', e.spiffeId],
    ['selectors', e.selectors],
    ['audiences', e.audiences ?? 'any'],
    ['jwt ttl', e.jwtTtl],
    ['x509 ttl', e.x509Ttl],
    ['task deadline', e.taskDeadline],
    ['created', isoSeconds(e.createdAt)],
    ['updated', isoSeconds(e.updatedAt)],
  ]);
}

async function getEntry(client: Client, id: string): Promise<Entry> {
  return (await client.call<Entry>('GET', `/v1/admin/entries/${seg(id)}`)).body;
}

export function entriesCommands(program: Command): void {
  const entries = program
    .command('entries')
    .description('registration entries: selectors -> SPIFFE ID, with limits');

  addConnection(entries.command('list').description('list registration entries')).action(
    async (opts: ConnectionOpts) => {
      const res = await clientOf(opts).call<{ entries: Entry[] }>('GET', '/v1/admin/entries');
      if (opts.json) {
        printJson(res.body);
        return;
      }
      printTable(
        ['id', 'spiffe id', 'selectors', 'audiences', 'jwt ttl', 'x509 ttl', 'deadline'],
        res.body.entries.map((e) => [
          e.id,
          e.spiffeId,
          e.selectors.join(','),
          e.audiences?.join(',') ?? 'any',
          e.jwtTtl,
          e.x509Ttl,
          e.taskDeadline,
        ]),
      );
    },
  );

  addConnection(entries.command('get').argument('<id>', 'entry id').description('show one entry')).action(
    async (id: string, opts: ConnectionOpts) => {
      const entry = await getEntry(clientOf(opts), id);
      if (opts.json) printJson(entry);
      else printEntry(entry);
    },
  );

  entryOptions(entries.command('create').description('create an entry (needs --otp)'), false).action(
    async (opts: EntryOpts) => {
      const res = await clientOf(opts).call<Entry>('POST', '/v1/admin/entries', {
        body: inputFrom(opts),
        privileged: true,
      });
      if (opts.json) printJson(res.body);
      else printEntry(res.body);
    },
  );

  entryOptions(
    entries
      .command('update')
      .argument('<id>', 'entry id')
      .description('change an entry: the fields given replace the current ones, the rest stay (needs --otp)'),
    true,
  ).action(async (id: string, opts: EntryOpts) => {
    const client = clientOf(opts);
    const current = await getEntry(client, id);
    const res = await client.call<Entry>('PUT', `/v1/admin/entries/${seg(id)}`, {
      body: inputFrom(opts, current),
      privileged: true,
    });
    if (opts.json) printJson(res.body);
    else printEntry(res.body);
  });

  addConnection(
    entries.command('delete').argument('<id>', 'entry id').description('delete an entry (needs --otp)'),
  ).action(async (id: string, opts: ConnectionOpts) => {
    await clientOf(opts).call('DELETE', `/v1/admin/entries/${seg(id)}`, { privileged: true });
    if (opts.json) printJson({ deleted: id });
    else out(`entry ${id} deleted`);
  });
}
