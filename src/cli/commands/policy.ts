// `writ policy check DIR` (offline), `writ policy show` and `writ policy reload` (GET/POST /v1/admin/policy...).
import type { Command } from 'commander';
import { addConnection, type ConnectionOpts, clientOf, out, printJson, printTable } from '../common.ts';

interface PolicyInfo {
  id: string;
  file: string;
  line: number;
  column: number;
  effect: string;
  maxTtl?: number;
  approval: boolean;
}

function printPolicies(policies: readonly PolicyInfo[]): void {
  printTable(
    ['id', 'effect', 'where', 'max ttl', 'approval'],
    policies.map((p) => [
      p.id,
      p.effect,
      `${p.file}:${p.line}:${p.column}`,
      p.maxTtl,
      p.approval ? 'required' : undefined,
    ]),
  );
}

export function policyCommands(program: Command): void {
  const policy = program.command('policy').description('Cedar policies that decide every issuance');

  policy
    .command('check')
    .argument('<dir>', 'a policy directory (*.cedar and *.cedarschema files)')
    .description('validate a policy directory offline, as the broker would at start or reload')
    .option('--json', 'print the result as JSON')
    .action(async (dir: string, opts: { json?: boolean }) => {
      // Loaded here, not at start: the Cedar engine is big and no other command needs it.
      const { formatProblem, isPolicyError, loadPolicySet } = await import('../../policy/index.ts');
      try {
        const set = await loadPolicySet({ dir });
        if (opts.json) {
          printJson({
            valid: true,
            dir,
            version: set.version,
            policies: set.policies,
            warnings: set.warnings,
          });
          return;
        }
        out(
          `${dir}: valid, ${set.policies.length} polic${set.policies.length === 1 ? 'y' : 'ies'} (version ${set.version})`,
        );
        printPolicies(set.policies);
        for (const w of set.warnings) process.stderr.write(`warning: ${w}\n`);
      } catch (e) {
        if (!isPolicyError(e)) throw e;
        if (opts.json) printJson({ valid: false, dir, problems: e.problems });
        else {
          const count = e.problems.length === 1 ? '1 problem' : `${e.problems.length} problems`;
          process.stderr.write(
            `${dir}: invalid (${count})\n${e.problems.map((p) => `  ${formatProblem(p)}\n`).join('')}`,
          );
        }
        process.exitCode = 1;
      }
    });

  addConnection(
    policy.command('show').description('the policies the broker has loaded (ids, never text)'),
  ).action(async (opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<{ version: string; policies: PolicyInfo[]; warnings: string[] }>(
      'GET',
      '/v1/admin/policy',
    );
    if (opts.json) {
      printJson(res.body);
      return;
    }
    out(`version ${res.body.version}`);
    printPolicies(res.body.policies);
    for (const w of res.body.warnings) process.stderr.write(`warning: ${w}\n`);
  });

  addConnection(
    policy
      .command('reload')
      .description("reload the broker's policy directory; a bad set keeps the old one (needs --otp)"),
  ).action(async (opts: ConnectionOpts) => {
    const res = await clientOf(opts).call<{ version: string; policies: string[] }>(
      'POST',
      '/v1/admin/policy/reload',
      { privileged: true },
    );
    if (opts.json) printJson(res.body);
    else out(`policies reloaded: version ${res.body.version}; ${res.body.policies.join(', ') || '(none)'}`);
  });
}
