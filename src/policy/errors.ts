// PolicyError: a policy set that cannot be used, with every problem named by file and position.

/** One problem in a policy or schema file. `line` and `column` are 1-based. */
export interface PolicyProblem {
  readonly file: string;
  readonly line?: number;
  readonly column?: number;
  readonly message: string;
}

/**
 * Thrown when a policy directory (or a reload) is refused. The message lists every problem, one a line, as
 * `file:line:column: message`; it never carries a stack trace, so it can be printed to an operator as is.
 */
export class PolicyError extends Error {
  readonly code = 'ERR_POLICY_INVALID';
  readonly problems: readonly PolicyProblem[];

  constructor(summary: string, problems: readonly PolicyProblem[]) {
    super([summary, ...problems.map((p) => `  ${formatProblem(p)}`)].join('\n'));
    this.name = 'PolicyError';
    this.problems = problems;
    // The message is the whole story; a JS stack would only bury it.
    this.stack = `${this.name}: ${this.message}`;
  }
}

export function formatProblem(p: PolicyProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  return `${where}: ${p.message}`;
}

export function isPolicyError(e: unknown): e is PolicyError {
  return e instanceof PolicyError;
}
