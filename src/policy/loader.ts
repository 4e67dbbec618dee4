// Loads a policy directory: Writ's schema plus relying parties' actions, and every *.cedar file, strictly validated.
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkParseSchema,
  type DetailedError,
  type PolicyJson,
  policySetTextToParts,
  policyToJson,
  type SchemaJson,
  schemaToJsonWithResolvedTypes,
  validate,
} from './cedar.ts';
import { formatProblem, PolicyError, type PolicyProblem } from './errors.ts';
import { describeCedarError, positionOfIndex, problemAt, type SourceFile } from './source.ts';

/** The shipped policy directory, used when none is configured. */
export const DEFAULT_POLICY_DIR = fileURLToPath(new URL('../../config/policies', import.meta.url));
/** Writ's own schema; always this file, whatever the policy directory. */
export const WRIT_SCHEMA_FILE = fileURLToPath(
  new URL('../../config/policies/writ.cedarschema', import.meta.url),
);
export const WRIT_SCHEMA_FILE_NAME = 'writ.cedarschema';
export const NAMESPACE = 'Writ';
/** The largest `@max_ttl` accepted (one day, the attestor facade's own bound). */
export const MAX_TTL_ANNOTATION_LIMIT = 86_400;
/** Ids are shown to callers and written to the audit log: keep them plain. */
export const POLICY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

const WRIT_ACTIONS = new Set(['issue', 'issue_jwt', 'issue_x509']);

export type ResourceType = 'Audience' | 'Resource';

export interface ActionInfo {
  readonly name: string;
  /** Resource types the action applies to; empty for an action group. */
  readonly resourceTypes: readonly ResourceType[];
  /** Every group the action belongs to, transitively. */
  readonly ancestors: readonly string[];
}

export interface PolicyInfo {
  readonly id: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly effect: 'permit' | 'forbid';
  /** `@max_ttl("<seconds>")`: caps the credential's lifetime when this permit decides. */
  readonly maxTtl?: number;
  /** `@approval("required")`: an admin must approve when this permit decides. */
  readonly approval: boolean;
}

export interface CompiledPolicySet {
  /** The directory it was loaded from; undefined when compiled from sources in memory. */
  readonly dir: string | undefined;
  /** A digest of every file that made it (schema included): changes when any policy changes. */
  readonly version: string;
  readonly files: readonly string[];
  readonly policies: readonly PolicyInfo[];
  readonly actions: ReadonlyMap<string, ActionInfo>;
  /** Validator warnings (e.g. a policy that can never apply), `file:line:column: message`. */
  readonly warnings: readonly string[];
  /** Writ's schema with the relying parties' actions spliced in, as the validator saw it. */
  readonly schema: string;
  /** Policy text by `@id`, as handed to Cedar. */
  readonly staticPolicies: Readonly<Record<string, string>>;
  /**
   * For each action a request may name, the ids of the policies whose action scope can match it. A policy
   * outside its action's slice can neither be satisfied nor err, so evaluating only the slice is exact.
   */
  readonly byAction: ReadonlyMap<string, readonly string[]>;
  /** Every attribute name a policy reads (`.x`, `has x`): a request carries only these. */
  readonly attributesRead: ReadonlySet<string>;
  /**
   * The attribute names each policy reads, by `@id`, from Cedar's own parse (so `p["x"]` and `p.x` alike),
   * never from the policy text.
   */
  readonly attributesByPolicy: ReadonlyMap<string, ReadonlySet<string>>;
  /** Whether a policy names an action group, so requests must carry the action's ancestors. */
  readonly namesActionGroups: boolean;
}

export interface PolicySources {
  /** Writ's schema (normally WRIT_SCHEMA_FILE). */
  readonly schema: SourceFile;
  /** Relying parties' action declarations, added to namespace Writ. */
  readonly schemaExtensions: readonly SourceFile[];
  /** Policy files, in evaluation-irrelevant but reporting-relevant order. */
  readonly policies: readonly SourceFile[];
  readonly dir?: string | undefined;
}

/**
 * Reads `dir` (not its subdirectories): every `*.cedar` file in name order, every `*.cedarschema` file as a
 * declaration of relying parties' actions, and Writ's own schema. Throws PolicyError listing every problem.
 */
export async function loadPolicySet(opts: { dir: string }): Promise<CompiledPolicySet> {
  const { dir } = opts;
  const names = await listPolicyDir(dir);
  const problems: PolicyProblem[] = [];
  const schema = await readSource(WRIT_SCHEMA_FILE);
  const schemaExtensions: SourceFile[] = [];
  for (const name of names.filter((n) => n.endsWith('.cedarschema'))) {
    const file = await readSource(join(dir, name));
    if (name === WRIT_SCHEMA_FILE_NAME) {
      // A copy of Writ's schema beside the policies is harmless; a changed one would lie about the requests.
      if (file.text !== schema.text) {
        problems.push({
          file: file.path,
          message:
            "Writ's schema cannot be replaced: remove this file and declare relying parties' actions in another *.cedarschema file",
        });
      }
      continue;
    }
    schemaExtensions.push(file);
  }
  const policies: SourceFile[] = [];
  for (const name of names.filter((n) => n.endsWith('.cedar')))
    policies.push(await readSource(join(dir, name)));
  return compile({ schema, schemaExtensions, policies, dir }, problems);
}

/** Compiles policy sources held in memory (an upload, `writ policy check`). Throws PolicyError. */
export function compilePolicySet(sources: PolicySources): CompiledPolicySet {
  return compile(sources, []);
}

function compile(sources: PolicySources, problems: PolicyProblem[]): CompiledPolicySet {
  const warnings: string[] = [];
  const schema = compileSchema(sources.schema, sources.schemaExtensions, problems);
  if (!schema) {
    problems.push({
      file: sources.dir ?? sources.schema.path,
      message: 'the policies were checked for syntax only: fix the schema to have them type-checked',
    });
  }
  const compiled: CompiledPolicy[] = [];
  for (const file of sources.policies) compiled.push(...compilePolicyFile(file, schema, problems, warnings));

  const byId = new Map<string, PolicyInfo>();
  for (const { info } of compiled) {
    const first = byId.get(info.id);
    if (first) {
      problems.push({
        file: info.file,
        line: info.line,
        column: info.column,
        message: `duplicate @id("${info.id}"): already used at ${first.file}:${first.line}:${first.column}`,
      });
    } else {
      byId.set(info.id, info);
    }
  }
  if (problems.length > 0 || !schema) {
    const where = sources.dir ?? 'the policy sources';
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    throw new PolicyError(`invalid policy set in ${where} (${count})`, problems.sort(byPosition));
  }

  const staticPolicies: Record<string, string> = {};
  const attributesRead = new Set<string>();
  const attributesByPolicy = new Map<string, ReadonlySet<string>>();
  let namesActionGroups = false;
  for (const p of compiled) {
    if (!p.usable) continue;
    staticPolicies[p.info.id] = p.text;
    const own = new Set<string>();
    collectAttributes(p.json, own);
    attributesByPolicy.set(p.info.id, own);
    for (const a of own) attributesRead.add(a);
    if (!namesActionGroups && namesAnyOf(p.json, schema.groups)) namesActionGroups = true;
  }
  const byAction = new Map<string, string[]>();
  for (const action of schema.actions.values()) {
    if (action.resourceTypes.length === 0) continue;
    const ids = compiled.filter((p) => p.usable && actionScopeMatches(p.json, action)).map((p) => p.info.id);
    byAction.set(action.name, ids);
  }
  const files = [sources.schema, ...sources.schemaExtensions, ...sources.policies];
  return {
    dir: sources.dir,
    version: digest(files),
    files: files.map((f) => f.path),
    policies: compiled.filter((p) => p.usable).map((p) => p.info),
    actions: schema.actions,
    warnings,
    schema: schema.text,
    staticPolicies,
    byAction,
    attributesRead,
    attributesByPolicy,
    namesActionGroups,
  };
}

// --- schema -------------------------------------------------------------------------------------------------

interface CompiledSchema {
  readonly text: string;
  readonly actions: Map<string, ActionInfo>;
  /** Actions that other actions belong to. */
  readonly groups: ReadonlySet<string>;
}

type Namespace = NonNullable<SchemaJson<string>[string]>;

/** Writ's schema with relying parties' action declarations spliced into its namespace. */
function compileSchema(
  core: SourceFile,
  extensions: readonly SourceFile[],
  problems: PolicyProblem[],
): CompiledSchema | undefined {
  const parsed = checkParseSchema(core.text);
  if (parsed.type === 'failure') {
    for (const e of parsed.errors) problems.push(cedarProblem(core, e));
    return undefined;
  }
  const coreNs = resolvedNamespace(core.text);
  const close = core.text.lastIndexOf('}');
  if (!coreNs || close < 0 || core.text.slice(close + 1).trim() !== '') {
    problems.push({
      file: core.path,
      message: `Writ's schema must be one \`namespace ${NAMESPACE} { ... }\` block`,
    });
    return undefined;
  }
  const usable = extensions.filter((ext) => checkExtension(core, close, coreNs, ext, problems));
  if (usable.length !== extensions.length) return undefined;
  if (usable.length === 0) return { text: core.text, ...actionsOf(coreNs) };
  const merged = splice(core, close, usable);
  const all = checkParseSchema(merged.text);
  if (all.type === 'failure') {
    // Each file parsed alone with Writ's schema: what is left is a clash between two of them.
    for (const e of all.errors) problems.push(merged.problem(e));
    return undefined;
  }
  const ns = resolvedNamespace(merged.text);
  if (!ns) return undefined;
  return { text: merged.text, ...actionsOf(ns) };
}

/** One relying party's schema file: only actions, only on Writ's types, only with Writ's context. */
function checkExtension(
  core: SourceFile,
  close: number,
  coreNs: Namespace,
  ext: SourceFile,
  problems: PolicyProblem[],
): boolean {
  const before = problems.length;
  const code = ext.text.replace(/\/\/[^\n]*/g, (c) => ' '.repeat(c.length));
  const ns = /(^|[\s;{}])namespace\s/.exec(code);
  if (ns) {
    problems.push(
      locate(
        ext,
        ns.index + (ns[1]?.length ?? 0),
        `declare actions at the top level of this file, without a namespace block: they are added to namespace ${NAMESPACE}`,
      ),
    );
    return false;
  }
  const merged = splice(core, close, [ext]);
  const parsed = checkParseSchema(merged.text);
  if (parsed.type === 'failure') {
    for (const e of parsed.errors) problems.push(merged.problem(e));
    return false;
  }
  const json = schemaToJsonWithResolvedTypes(merged.text);
  const extNs = json.type === 'success' ? json.json[NAMESPACE] : undefined;
  if (json.type !== 'success' || !extNs || Object.keys(json.json).length !== 1) {
    problems.push({
      file: ext.path,
      message: `a schema file here may only declare actions in namespace ${NAMESPACE}`,
    });
    return false;
  }
  if (
    JSON.stringify(extNs.entityTypes) !== JSON.stringify(coreNs.entityTypes) ||
    JSON.stringify(extNs.commonTypes ?? {}) !== JSON.stringify(coreNs.commonTypes ?? {})
  ) {
    problems.push({
      file: ext.path,
      message: "a schema file here may only declare actions: Writ's entity and common types are its own",
    });
  }
  for (const [name, action] of Object.entries(extNs.actions)) {
    if (name in coreNs.actions) continue;
    const at = (message: string): void => {
      problems.push(
        locate(ext, code.search(new RegExp(`(?<![\\w"])"?${escapeRegExp(name)}"?(?![\\w"])`)), message),
      );
    };
    const applies = action.appliesTo;
    const isGroup = !applies || (applies.principalTypes.length === 0 && applies.resourceTypes.length === 0);
    if (
      !isGroup &&
      (applies.principalTypes.join() !== `${NAMESPACE}::Workload` ||
        applies.resourceTypes.join() !== `${NAMESPACE}::Resource` ||
        JSON.stringify(applies.context) !== JSON.stringify({ type: `${NAMESPACE}::RequestContext` }))
    ) {
      at(
        `action "${name}": a relying party's action applies to { principal: Workload, resource: Resource, context: RequestContext }`,
      );
    }
    for (const parent of action.memberOf ?? []) {
      if (WRIT_ACTIONS.has(parent.id))
        at(`action "${name}" cannot belong to Writ's own action "${parent.id}"`);
    }
  }
  return problems.length === before;
}

interface Spliced {
  readonly text: string;
  problem(e: DetailedError): PolicyProblem;
}

/** `core` up to its namespace's closing brace, each extension, then the brace: positions map back to files. */
function splice(core: SourceFile, close: number, extensions: readonly SourceFile[]): Spliced {
  const pieces = [
    { file: core, fileStart: 0, text: core.text.slice(0, close) },
    ...extensions.map((file) => ({ file, fileStart: 0, text: file.text })),
    { file: core, fileStart: Buffer.byteLength(core.text.slice(0, close)), text: core.text.slice(close) },
  ];
  const segments: { file: SourceFile; start: number; fileStart: number; length: number }[] = [];
  let text = '';
  let bytes = 0;
  for (const piece of pieces) {
    if (text !== '') {
      text += '\n';
      bytes += 1;
    }
    const length = Buffer.byteLength(piece.text);
    segments.push({ file: piece.file, start: bytes, fileStart: piece.fileStart, length });
    text += piece.text;
    bytes += length;
  }
  const tail = segments[segments.length - 1]!;
  const locateIn = (offset: number): { file: SourceFile; offset: number } => {
    let seg = segments[0]!;
    for (const s of segments) if (s.start <= offset) seg = s;
    const previous = segments[segments.length - 2];
    // Stumbling on the namespace's closing brace means the last extension ended early (a missing `;`).
    if (seg === tail && offset <= tail.start && previous && previous.file !== core) {
      return { file: previous.file, offset: previous.fileStart + previous.length };
    }
    return { file: seg.file, offset: seg.fileStart + Math.min(Math.max(offset - seg.start, 0), seg.length) };
  };
  return {
    text,
    problem(e) {
      const message = describeCedarError(e);
      const located = (e.sourceLocations ?? []).map((l) => locateIn(l.start));
      // A clash names both places: blame the later one, and a relying party's file before Writ's own.
      const at = located.filter((l) => l.file !== core).pop() ?? located[0];
      return at ? problemAt(at.file, at.offset, message) : { file: core.path, message };
    },
  };
}

function resolvedNamespace(text: string): Namespace | undefined {
  const json = schemaToJsonWithResolvedTypes(text);
  if (json.type !== 'success') return undefined;
  return json.json[NAMESPACE];
}

function actionsOf(ns: Namespace): { actions: Map<string, ActionInfo>; groups: Set<string> } {
  const parents = new Map<string, string[]>();
  const groups = new Set<string>();
  for (const [name, action] of Object.entries(ns.actions)) {
    const ids = (action.memberOf ?? [])
      .filter((m) => m.type === undefined || m.type === `${NAMESPACE}::Action`)
      .map((m) => m.id);
    parents.set(name, ids);
    for (const id of ids) groups.add(id);
  }
  const actions = new Map<string, ActionInfo>();
  for (const [name, action] of Object.entries(ns.actions)) {
    const ancestors = new Set<string>();
    const queue = [...(parents.get(name) ?? [])];
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      if (ancestors.has(next)) continue;
      ancestors.add(next);
      queue.push(...(parents.get(next) ?? []));
    }
    const resourceTypes = (action.appliesTo?.resourceTypes ?? [])
      .map((t) => t.replace(`${NAMESPACE}::`, ''))
      .filter((t): t is ResourceType => t === 'Audience' || t === 'Resource');
    actions.set(name, { name, resourceTypes, ancestors: [...ancestors] });
  }
  return { actions, groups };
}

// --- policies -----------------------------------------------------------------------------------------------

interface CompiledPolicy {
  readonly info: PolicyInfo;
  /** False when an annotation is wrong: the id still counts for duplicates, the policy is not used. */
  readonly usable: boolean;
  readonly text: string;
  readonly json: PolicyJson;
}

function compilePolicyFile(
  file: SourceFile,
  schema: CompiledSchema | undefined,
  problems: PolicyProblem[],
  warnings: string[],
): CompiledPolicy[] {
  const parts = policySetTextToParts(file.text);
  if (parts.type === 'failure') {
    for (const e of parts.errors) problems.push(cedarProblem(file, e));
    return [];
  }
  if (parts.policy_templates.length > 0) {
    for (const t of parts.policy_templates) {
      problems.push(
        locate(file, file.text.indexOf(t), 'templates (?principal, ?resource slots) are not supported'),
      );
    }
    return [];
  }
  // Cedar names a file's policies policy0, policy1... in source order and returns them sorted by that name.
  const generated = parts.policies.map((_, n) => `policy${n}`).sort();
  const bySourceOrder: (CompiledPolicy | undefined)[] = [];
  const taken = new Set<number>();
  parts.policies.forEach((text, k) => {
    const n = Number((generated[k] ?? 'policy0').slice('policy'.length));
    let index = file.text.indexOf(text);
    while (index >= 0 && taken.has(index)) index = file.text.indexOf(text, index + 1);
    taken.add(index);
    bySourceOrder[n] = readPolicy(file, text, index, problems);
  });
  if (schema) validateFile(file, schema, bySourceOrder, problems, warnings);
  return bySourceOrder.filter((p): p is CompiledPolicy => p !== undefined);
}

/** The annotations Writ reads: `@id` (required), `@max_ttl`, `@approval`. */
function readPolicy(
  file: SourceFile,
  text: string,
  index: number,
  problems: PolicyProblem[],
): CompiledPolicy | undefined {
  const json = policyToJson(text);
  if (json.type === 'failure') {
    for (const e of json.errors) problems.push(locate(file, index, describeCedarError(e)));
    return undefined;
  }
  const policy = json.json;
  const annotations = policy.annotations ?? {};
  const before = problems.length;
  const id = annotations.id;
  if (!('id' in annotations)) {
    problems.push(locate(file, index, 'policy has no @id("...") annotation: every policy needs a unique id'));
  } else if (typeof id !== 'string' || !POLICY_ID_PATTERN.test(id)) {
    problems.push(
      locate(file, index, '@id must be 1-128 letters, digits or . _ : / - and start with a letter or digit'),
    );
  }
  let maxTtl: number | undefined;
  if ('max_ttl' in annotations) {
    const raw = annotations.max_ttl;
    maxTtl = typeof raw === 'string' && /^[1-9][0-9]{0,5}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(maxTtl <= MAX_TTL_ANNOTATION_LIMIT)) {
      problems.push(
        locate(
          file,
          index,
          `@max_ttl must be a whole number of seconds from 1 to ${MAX_TTL_ANNOTATION_LIMIT}`,
        ),
      );
    }
    if (policy.effect !== 'permit')
      problems.push(locate(file, index, '@max_ttl applies to permit policies only'));
  }
  const approval = 'approval' in annotations;
  if (approval) {
    if (annotations.approval !== 'required')
      problems.push(locate(file, index, '@approval must be "required"'));
    if (policy.effect !== 'permit')
      problems.push(locate(file, index, '@approval applies to permit policies only'));
  }
  if (typeof id !== 'string' || !POLICY_ID_PATTERN.test(id)) return undefined;
  const { line, column } = index < 0 ? { line: 1, column: 1 } : positionOfIndex(file.text, index);
  const info: PolicyInfo = {
    id,
    file: file.path,
    line,
    column,
    effect: policy.effect,
    approval,
    ...(maxTtl === undefined ? {} : { maxTtl }),
  };
  return { info, usable: problems.length === before, text, json: policy };
}

/** Strict validation of a whole file, so Cedar's positions are positions in that file. */
function validateFile(
  file: SourceFile,
  schema: CompiledSchema,
  bySourceOrder: readonly (CompiledPolicy | undefined)[],
  problems: PolicyProblem[],
  warnings: string[],
): void {
  const answer = validate({
    schema: schema.text,
    policies: { staticPolicies: file.text },
    validationSettings: { mode: 'strict' },
  });
  if (answer.type === 'failure') {
    for (const e of answer.errors) problems.push(cedarProblem(file, e));
    return;
  }
  const idOf = (generated: string): string | undefined =>
    /^policy\d+$/.test(generated) ? bySourceOrder[Number(generated.slice(6))]?.info.id : undefined;
  const describe = (policyId: string, e: DetailedError): PolicyProblem => {
    const id = idOf(policyId);
    const message = describeCedarError(e, idOf);
    return problemAt(file, e.sourceLocations?.[0]?.start, id === undefined ? message : `[${id}] ${message}`);
  };
  // The validator checks a policy once per action it may apply to: one report per place and message is enough.
  const seen = new Set<string>();
  for (const v of answer.validationErrors) {
    const problem = describe(v.policyId, v.error);
    const key = formatProblem(problem);
    if (!seen.has(key)) problems.push(problem);
    seen.add(key);
  }
  for (const v of answer.validationWarnings) {
    const warning = formatProblem(describe(v.policyId, v.error));
    if (!warnings.includes(warning)) warnings.push(warning);
  }
  for (const e of answer.otherWarnings) warnings.push(formatProblem(cedarProblem(file, e)));
}

// --- helpers ------------------------------------------------------------------------------------------------

function byPosition(a: PolicyProblem, b: PolicyProblem): number {
  if (a.file !== b.file) return a.file < b.file ? -1 : 1;
  return (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

function cedarProblem(file: SourceFile, e: DetailedError): PolicyProblem {
  return problemAt(file, e.sourceLocations?.[0]?.start, describeCedarError(e));
}

function locate(file: SourceFile, index: number, message: string): PolicyProblem {
  if (index < 0) return { file: file.path, message };
  return { file: file.path, ...positionOfIndex(file.text, index), message };
}

/** Attribute names read anywhere in a policy (`x.attr`, `x has attr`, `x has a.b`). */
function collectAttributes(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) collectAttributes(item, into);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  for (const [key, value] of Object.entries(node)) {
    if ((key === '.' || key === 'has') && typeof value === 'object' && value !== null && 'attr' in value) {
      const attr = (value as { attr: unknown }).attr;
      for (const a of Array.isArray(attr) ? attr : [attr]) if (typeof a === 'string') into.add(a);
    }
    collectAttributes(value, into);
  }
}

/** Whether a policy's action scope (`action`, `action == A`, `action in G`, `action in [A, G]`) admits `action`. */
function actionScopeMatches(policy: PolicyJson, action: ActionInfo): boolean {
  const scope = policy.action;
  if (scope.op === 'All') return true;
  const uids = 'entities' in scope ? scope.entities : 'entity' in scope ? [scope.entity] : [];
  const names = uids.map((u) => ('__entity' in u ? u.__entity : u)).map((u) => u.id);
  if (scope.op === '==') return names.includes(action.name);
  return names.some((n) => n === action.name || action.ancestors.includes(n));
}

/** Whether a policy names one of `actions` (in its scope or its conditions). */
function namesAnyOf(node: unknown, actions: ReadonlySet<string>): boolean {
  if (Array.isArray(node)) return node.some((item) => namesAnyOf(item, actions));
  if (typeof node !== 'object' || node === null) return false;
  const o = node as Record<string, unknown>;
  if (o.type === `${NAMESPACE}::Action` && typeof o.id === 'string' && actions.has(o.id)) return true;
  return Object.values(o).some((value) => namesAnyOf(value, actions));
}

async function listPolicyDir(dir: string): Promise<string[]> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such directory'
        : code === 'ENOTDIR'
          ? 'not a directory'
          : `unreadable (${code})`;
    throw new PolicyError(`cannot load policies from ${dir}`, [{ file: dir, message: why }]);
  }
  const names: string[] = [];
  for (const entry of entries) {
    // Dotfiles are skipped: Kubernetes mounts a ConfigMap through `..data` links beside the real names.
    if (entry.name.startsWith('.')) continue;
    if (!entry.name.endsWith('.cedar') && !entry.name.endsWith('.cedarschema')) continue;
    // Anything else by a policy name is read, so a dangling link fails loudly instead of dropping a forbid.
    if (!entry.isDirectory()) names.push(entry.name);
  }
  return names.sort();
}

async function readSource(path: string): Promise<SourceFile> {
  try {
    const text = await readFile(path, 'utf8');
    return { path, text: text.startsWith('\uFEFF') ? text.slice(1) : text };
  } catch (e) {
    throw new PolicyError(`cannot read ${path}`, [
      { file: path, message: `unreadable (${(e as NodeJS.ErrnoException).code})` },
    ]);
  }
}

function digest(files: readonly SourceFile[]): string {
  const hash = createHash('sha256');
  for (const f of files) hash.update(`${f.path.split(/[\\/]/).pop()}\0${f.text}\0`);
  return hash.digest('hex').slice(0, 16);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
