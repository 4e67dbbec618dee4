// The `writ` command line: run the broker or the worker, and talk to a broker over its HTTP API.
//
// Exit codes: 0 success, 1 an error answer of the broker (printed as `error: <code>: <description>`) or any
// other failure, 2 a usage error. The admin token is never printed.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ApiError, printable, UsageError } from './client.ts';
import { adminCommands } from './commands/admin.ts';
import { approvalCommands } from './commands/approvals.ts';
import { auditCommands } from './commands/audit.ts';
import { entriesCommands } from './commands/entries.ts';
import { joinTokenCommands } from './commands/join-token.ts';
import { keysCommands } from './commands/keys.ts';
import { policyCommands } from './commands/policy.ts';
import { revokeCommand } from './commands/revoke.ts';
import { serverCommands } from './commands/server.ts';
import { svidCommands } from './commands/svid.ts';
import { credentialCommands, taskCommands } from './commands/tasks.ts';

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildCli(): Command {
  const program = new Command('writ')
    .description('Writ: short-lived, task-scoped credentials for machines')
    .version(version(), '-V, --version')
    // Settings subcommands inherit: errors are thrown to main() (which picks the exit code), not exited on.
    .exitOverride()
    .showHelpAfterError('(add --help for usage)');
  serverCommands(program);
  adminCommands(program);
  entriesCommands(program);
  joinTokenCommands(program);
  svidCommands(program);
  revokeCommand(program);
  taskCommands(program);
  credentialCommands(program);
  auditCommands(program);
  policyCommands(program);
  keysCommands(program);
  approvalCommands(program);
  return program;
}

const HINTS: Record<string, string> = {
  ERR_OTP_REQUIRED: 'pass a fresh code from your authenticator with --otp CODE (or WRIT_OTP)',
  ERR_OTP_INVALID: 'codes are single use: wait for the next code and try again',
  ERR_ADMIN_UNAUTHENTICATED: 'check WRIT_ADMIN_TOKEN (or --token) and --url',
};

function reportApiError(e: ApiError): void {
  const lines = [`error: ${e.code}: ${printable(e.description)}`];
  const body = e.body ?? {};
  if (Array.isArray(body.policies) && body.policies.length > 0)
    lines.push(`policies: ${printable(body.policies.map(String).join(', '))}`);
  if (e.code === 'ERR_APPROVAL_PENDING' && typeof body.approval === 'string') {
    const id = printable(body.approval);
    lines.push(
      `approval: ${id}`,
      `once an admin runs 'writ approvals approve ${id}', repeat this command with --approval ${id}`,
    );
  }
  const hint = HINTS[e.code];
  if (hint !== undefined) lines.push(`hint: ${hint}`);
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** Runs the CLI; resolves to the exit code (a running server or worker keeps the process alive). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildCli();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander has printed the message (or the help) already.
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n(add --help for usage)\n`);
      return EXIT_USAGE;
    }
    if (e instanceof ApiError) {
      reportApiError(e);
      return EXIT_ERROR;
    }
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_ERROR;
  }
}

process.exitCode = await main(process.argv);
