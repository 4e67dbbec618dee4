// The github_actions attestor: a GitHub Actions OIDC token in, the run's selectors and task out.
import {
  JwtEvidenceVerifier,
  parseTokenEvidence,
  requiredStringClaim,
  selector,
  stringClaim,
} from '../../src/attestation/jwt-evidence.ts';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorHost,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import { isTaskId } from '../../src/lifecycle/task-id.ts';
import { type GithubActionsConfig, githubActionsConfigSchema } from './config.ts';

export const NAME = 'github_actions';
export const TASK_NAMESPACE = 'github';

/** Claims that become selectors `github_actions:<claim>:<value>` (absent or empty claims are skipped). */
export const SELECTOR_CLAIMS = [
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'repository_visibility',
  'ref',
  'ref_type',
  'ref_protected',
  'environment',
  'workflow_ref',
  'job_workflow_ref',
  'event_name',
  'actor',
  'actor_id',
  'runner_environment',
] as const;

// GitHub owner and repository names: letters, digits, '.', '_' and '-'.
const REPOSITORY = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;
const DIGITS = /^[0-9]{1,20}$/;

/** The task of one attempt of a workflow run: every credential of the run belongs to it. */
export function githubRunTask(repository: string, runId: string | number, attempt: string | number): string {
  return `${TASK_NAMESPACE}:${repository}/${runId}/${attempt}`;
}

/** The issuers whose tokens this attestor verifies (for routing a token exchange). */
export function tokenIssuers(config: GithubActionsConfig): string[] {
  return [config.issuer];
}

function digitsClaim(claims: Record<string, unknown>, name: string): string {
  const value = requiredStringClaim(claims, name);
  if (!DIGITS.test(value)) throw new AttestationError(`the token's ${name} claim must be a decimal number`);
  return value;
}

class GithubActionsAttestor implements Attestor {
  readonly name = NAME;
  readonly legacy = false;
  readonly taskNamespace = TASK_NAMESPACE;
  readonly #verifier: JwtEvidenceVerifier;

  constructor(config: GithubActionsConfig, host: AttestorHost) {
    this.#verifier = new JwtEvidenceVerifier(
      {
        attestor: NAME,
        issuer: config.issuer,
        audience: config.audience,
        jwksUri: config.jwksUri,
        algorithms: config.algorithms,
        clockSkew: config.clockSkew,
        maxTokenLifetime: config.maxTokenLifetime,
        singleUse: config.singleUse,
        replayScope: 'github_actions_jti',
      },
      host,
    );
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const token = parseTokenEvidence(evidence);
    const verified = await this.#verifier.verify(token);
    const { claims } = verified;

    const repository = requiredStringClaim(claims, 'repository');
    if (!REPOSITORY.test(repository))
      throw new AttestationError("the token's repository claim is not owner/name");
    const task = githubRunTask(repository, digitsClaim(claims, 'run_id'), digitsClaim(claims, 'run_attempt'));
    if (!isTaskId(task)) throw new AttestationError('the run does not make a valid task id');

    const selectors: string[] = [];
    for (const claim of SELECTOR_CLAIMS) {
      const value = stringClaim(claims, claim);
      if (value !== undefined) selectors.push(selector(NAME, claim, value));
    }
    // Last: a token is spent only when everything else about it holds.
    await this.#verifier.consume(verified);
    return { selectors, task, expiresAt: claims.exp };
  }
}

export const githubActionsPlugin: AttestorPlugin<GithubActionsConfig> = {
  name: NAME,
  configSchema: githubActionsConfigSchema,
  create: (config, host) => new GithubActionsAttestor(config, host),
};
