// Request-time policy with Cedar: load and validate a policy directory, decide requests, reload safely.
export { type Decision, PolicyEngine, type PolicyEngineOptions, workloadFacts } from './engine.ts';
export { formatProblem, isPolicyError, PolicyError, type PolicyProblem } from './errors.ts';
export {
  type ActionInfo,
  type CompiledPolicySet,
  compilePolicySet,
  DEFAULT_POLICY_DIR,
  loadPolicySet,
  MAX_TTL_ANNOTATION_LIMIT,
  type PolicyInfo,
  type PolicySources,
  type ResourceType,
  WRIT_SCHEMA_FILE,
} from './loader.ts';
export type { CredentialType, DecisionRequest, FactValue } from './request.ts';
export type { SourceFile } from './source.ts';
