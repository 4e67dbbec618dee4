import { describe, expect, it } from 'vitest';
import { BENCH_REQUEST, generatePolicies } from '../../../src/policy/bench.ts';
import { PolicyEngine } from '../../../src/policy/index.ts';
import { policyDir } from './fixtures.ts';

describe('the policy benchmark', () => {
  it('generates a valid set in which exactly one policy grants the benchmark request', async () => {
    const engine = await PolicyEngine.load({
      dir: await policyDir({ 'generated.cedar': generatePolicies(30) }),
    });
    expect(engine.policySet.policies).toHaveLength(30);
    expect(engine.decide(BENCH_REQUEST)).toMatchObject({
      decision: 'allow',
      reasons: ['grant-bench'],
      ttlCap: 600,
    });
  });
});
