import { mkdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  compilePolicySet,
  DEFAULT_POLICY_DIR,
  loadPolicySet,
  PolicyError,
  WRIT_SCHEMA_FILE,
} from '../../../src/policy/index.ts';
import { policyDir } from './fixtures.ts';

const OK = '@id("ok") permit (principal, action in Writ::Action::"issue", resource);\n';

async function refusal(files: Record<string, string>): Promise<PolicyError> {
  const dir = await policyDir(files);
  try {
    await loadPolicySet({ dir });
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    const err = e as PolicyError;
    expect(err.code).toBe('ERR_POLICY_INVALID');
    // No stack noise: printing the error prints the problems and nothing else.
    expect(err.stack).toBe(`PolicyError: ${err.message}`);
    return err;
  }
  throw new Error('expected the policy set to be refused');
}

describe('loading a policy directory', () => {
  it('loads the shipped directory: default.cedar only, not the examples beneath it', async () => {
    const set = await loadPolicySet({ dir: DEFAULT_POLICY_DIR });
    expect(set.policies.map((p) => [p.id, p.file.split('/').pop(), p.line, p.effect])).toEqual([
      ['default-issue', 'default.cedar', 7, 'permit'],
    ]);
    expect(set.warnings).toEqual([]);
    expect(set.version).toMatch(/^[0-9a-f]{16}$/);
  });

  it('reads *.cedar files in name order, ignoring subdirectories, dotfiles and other files', async () => {
    const dir = await policyDir({
      'b.cedar': '@id("from-b") permit (principal, action in Writ::Action::"issue", resource);',
      'a.cedar':
        '@id("from-a") forbid (principal, action in Writ::Action::"issue", resource) when { principal.legacy };',
      '.hidden.cedar': 'this is not cedar',
      'notes.txt': 'nor is this',
    });
    await mkdir(join(dir, 'sub'));
    await mkdir(join(dir, 'dir.cedar'));
    const set = await loadPolicySet({ dir });
    expect(set.policies.map((p) => p.id)).toEqual(['from-a', 'from-b']);
    expect(set.policies[0]).toMatchObject({ effect: 'forbid', line: 1, column: 1, approval: false });
  });

  it('follows symbolic links to policy files (a mounted ConfigMap) and fails loudly on a dangling one', async () => {
    const source = await policyDir({ 'real.cedar': OK });
    const dir = await policyDir({});
    await symlink(join(source, 'real.cedar'), join(dir, 'linked.cedar'));
    expect((await loadPolicySet({ dir })).policies.map((p) => p.id)).toEqual(['ok']);
    await symlink(join(source, 'gone.cedar'), join(dir, 'dangling.cedar'));
    await expect(loadPolicySet({ dir })).rejects.toThrow(/dangling\.cedar.*unreadable \(ENOENT\)/s);
  });

  it('refuses a missing directory', async () => {
    await expect(loadPolicySet({ dir: '/nonexistent/writ-policies' })).rejects.toThrow(
      'cannot load policies from /nonexistent/writ-policies\n  /nonexistent/writ-policies: no such directory',
    );
  });

  it('reports a syntax error with the file name, line and column', async () => {
    const err = await refusal({
      'good.cedar': OK,
      'broken.cedar': '// a comment\n@id("broken")\npermit (principal, action, resource) when { 1 + };\n',
    });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ line: 3, column: 49 });
    expect(err.problems[0]?.file).toMatch(/broken\.cedar$/);
    expect(err.message).toMatch(
      /^invalid policy set in .* \(1 problem\)\n {2}\S*broken\.cedar:3:49: unexpected token `}`/,
    );
  });

  it('reports a schema type error with the file name, position and the policy id', async () => {
    const err = await refusal({
      'ok.cedar': OK,
      'typed.cedar': [
        '@id("hour-as-text")',
        'permit (principal, action in Writ::Action::"issue", resource) when { context.hour_utc == "ten" };',
        '@id("no-such-attribute")',
        'permit (principal, action in Writ::Action::"issue", resource) when { principal.team == "x" };',
      ].join('\n'),
    });
    const lines = err.message.split('\n').slice(1);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /typed\.cedar:2:70: \[hour-as-text\] the types Long and String are not compatible/,
    );
    expect(lines[1]).toMatch(
      /typed\.cedar:4:70: \[no-such-attribute\] attribute `team` on entity type `Writ::Workload` not found/,
    );
    expect(err.message).not.toMatch(/policy\d/);
  });

  it('reports positions in characters on lines holding multi-byte text', async () => {
    const err = await refusal({
      'u.cedar':
        '@id("ü") permit (principal, action, resource);\n@id("é-ok") permit (principal, action, resource) when { principal.nope };',
    });
    expect(err.message).toMatch(/u\.cedar:1:1: @id must be/);
    expect(err.message).toMatch(/u\.cedar:2:1: @id must be/);
  });

  it('refuses a policy without @id and duplicate ids across files', async () => {
    const err = await refusal({
      'a.cedar': `${OK}\npermit (principal, action, resource);\n`,
      'b.cedar': OK,
    });
    expect(err.message.split('\n').slice(1)).toEqual([
      expect.stringMatching(/a\.cedar:3:1: policy has no @id\("\.\.\."\) annotation/),
      expect.stringMatching(/b\.cedar:1:1: duplicate @id\("ok"\): already used at \S*a\.cedar:1:1$/),
    ]);
  });

  it('checks the annotations Writ reads', async () => {
    const err = await refusal({
      'a.cedar': [
        '@id("cap-zero") @max_ttl("0") permit (principal, action, resource);',
        '@id("cap-words") @max_ttl("ten minutes") permit (principal, action, resource);',
        '@id("cap-forbid") @max_ttl("60") forbid (principal, action, resource);',
        '@id("approval-maybe") @approval("maybe") permit (principal, action, resource);',
        '@id("approval-forbid") @approval("required") forbid (principal, action, resource);',
        '@id("bad id!") permit (principal, action, resource);',
        '@id permit (principal, action, resource);',
      ].join('\n'),
    });
    expect(err.problems.map((p) => [p.line, p.message])).toEqual([
      [1, '@max_ttl must be a whole number of seconds from 1 to 86400'],
      [2, '@max_ttl must be a whole number of seconds from 1 to 86400'],
      [3, '@max_ttl applies to permit policies only'],
      [4, '@approval must be "required"'],
      [5, '@approval applies to permit policies only'],
      [6, '@id must be 1-128 letters, digits or . _ : / - and start with a letter or digit'],
      [7, '@id must be 1-128 letters, digits or . _ : / - and start with a letter or digit'],
    ]);
  });

  it('refuses templates', async () => {
    const err = await refusal({ 't.cedar': '@id("t") permit (principal == ?principal, action, resource);' });
    expect(err.message).toMatch(
      /t\.cedar:1:1: templates \(\?principal, \?resource slots\) are not supported/,
    );
  });

  it('lists every problem of every file at once', async () => {
    const err = await refusal({
      'a.cedar': 'permit (principal, action, resource);',
      'b.cedar': '@id("b") permit (principal, action, resource) when { context.nope };',
      'c.cedar': '@id("c") permit (principal action, resource);',
    });
    expect(err.problems.map((p) => p.file.split('/').pop())).toEqual(['a.cedar', 'b.cedar', 'c.cedar']);
  });

  it('reports validator warnings without refusing the set', async () => {
    const dir = await policyDir({
      'w.cedar':
        '@id("never") permit (principal, action == Writ::Action::"issue_jwt", resource is Writ::Resource);',
    });
    const set = await loadPolicySet({ dir });
    expect(set.warnings.join('\n')).toMatch(/w\.cedar:1:1: \[never\] .*impossible/);
  });

  it('accepts an unchanged copy of writ.cedarschema and refuses a changed one', async () => {
    const schema = await readFile(WRIT_SCHEMA_FILE, 'utf8');
    expect(
      (await loadPolicySet({ dir: await policyDir({ 'writ.cedarschema': schema, 'a.cedar': OK }) })).policies,
    ).toHaveLength(1);
    const err = await refusal({ 'writ.cedarschema': schema.replace('task: String,', ''), 'a.cedar': OK });
    expect(err.message).toMatch(/writ\.cedarschema: Writ's schema cannot be replaced/);
  });

  it('compiles sources held in memory', async () => {
    const schema = { path: WRIT_SCHEMA_FILE, text: await readFile(WRIT_SCHEMA_FILE, 'utf8') };
    const set = compilePolicySet({
      schema,
      schemaExtensions: [],
      policies: [{ path: 'upload.cedar', text: OK }],
    });
    expect(set.dir).toBeUndefined();
    expect(set.policies.map((p) => `${p.file}:${p.id}`)).toEqual(['upload.cedar:ok']);
    expect(() =>
      compilePolicySet({
        schema,
        schemaExtensions: [],
        policies: [{ path: 'upload.cedar', text: 'permit' }],
      }),
    ).toThrow(/invalid policy set in the policy sources \(1 problem\)\n {2}upload\.cedar:1:7: /);
  });
});

describe("relying parties' actions (*.cedarschema in the policy directory)", () => {
  const DEPLOY =
    'action deploy appliesTo { principal: Workload, resource: Resource, context: RequestContext };\n';

  it('adds the declared actions to namespace Writ', async () => {
    const dir = await policyDir({
      'actions.cedarschema': `// ours\naction relying_party;\n${DEPLOY}action "read secrets" in [relying_party] appliesTo { principal: Workload, resource: Resource, context: RequestContext };`,
      'a.cedar': '@id("rp") permit (principal, action in Writ::Action::"relying_party", resource);',
    });
    const set = await loadPolicySet({ dir });
    expect(set.actions.get('deploy')).toEqual({ name: 'deploy', resourceTypes: ['Resource'], ancestors: [] });
    expect(set.actions.get('read secrets')?.ancestors).toEqual(['relying_party']);
    expect(set.byAction.get('read secrets')).toEqual(['rp']);
    expect(set.byAction.get('deploy')).toEqual([]);
    expect(set.byAction.get('issue_jwt')).toEqual([]);
  });

  it('refuses a policy naming an undeclared action', async () => {
    const err = await refusal({
      'a.cedar': '@id("a") permit (principal, action == Writ::Action::"deploy", resource);',
    });
    expect(err.message).toMatch(/a\.cedar:1:39: \[a\] unrecognized action `Writ::Action::"deploy"`/);
  });

  it('refuses a namespace block, with the position', async () => {
    const err = await refusal({ 'x.cedarschema': `// mine\nnamespace Writ { ${DEPLOY} }` });
    expect(err.message).toMatch(/x\.cedarschema:2:1: declare actions at the top level of this file/);
    expect(err.message).toMatch(/checked for syntax only/);
  });

  it("refuses entity types, other shapes of action and joining Writ's own actions", async () => {
    const err = await refusal({
      'x.cedarschema': [
        'entity Team;',
        'action a1 appliesTo { principal: Workload, resource: Audience, context: RequestContext };',
        'action a2 appliesTo { principal: Workload, resource: Resource, context: { change: String } };',
        'action a3 in [issue] appliesTo { principal: Workload, resource: Resource, context: RequestContext };',
      ].join('\n'),
    });
    expect(err.message).toMatch(/x\.cedarschema: a schema file here may only declare actions/);
    expect(err.message).toMatch(/x\.cedarschema:2:8: action "a1": a relying party's action applies to/);
    expect(err.message).toMatch(/x\.cedarschema:3:8: action "a2": a relying party's action applies to/);
    expect(err.message).toMatch(/x\.cedarschema:4:8: action "a3" cannot belong to Writ's own action "issue"/);
  });

  it('blames the right file for a syntax error and for a clash between files', async () => {
    let err = await refusal({ 'x.cedarschema': `// one\n${DEPLOY.replace(';', '')}` });
    expect(err.message).toMatch(/x\.cedarschema:3:1: unexpected token `}`/);
    err = await refusal({ 'x.cedarschema': DEPLOY, 'y.cedarschema': `\n${DEPLOY}` });
    expect(err.message).toMatch(/y\.cedarschema:2:8: `deploy` is declared twice/);
    err = await refusal({ 'x.cedarschema': 'action issue_jwt;' });
    expect(err.message).toMatch(/x\.cedarschema:1:8: `issue_jwt` is declared twice/);
  });
});
