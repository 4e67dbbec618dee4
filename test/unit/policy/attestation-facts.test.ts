// Which policies read attestation-time facts (selectors, posture): decided from Cedar's parse, whatever the
// spelling, so that a forbid on selectors is never skipped where a request has none (/v1/authorize, renewal).
import { describe, expect, it } from 'vitest';
import { policiesNeedingAttestationFacts } from '../../../src/policy/attestation-facts.ts';
import { PolicyEngine } from '../../../src/policy/index.ts';
import { policyDir } from './fixtures.ts';

const X509 = 'action == Writ::Action::"issue_x509"';

describe('policies that read attestation facts', () => {
  it('finds dotted, bracketed and has-spellings of selectors and posture, and nothing in comments', async () => {
    const engine = await PolicyEngine.load({
      dir: await policyDir({
        'a.cedar': [
          `@id("dotted") forbid (principal, ${X509}, resource) when { principal.selectors.contains("k8s:ns:evil") };`,
          `@id("bracketed") forbid (principal, ${X509}, resource) when { principal["selectors"].contains("k8s:ns:evil") };`,
          `@id("has-posture") forbid (principal, ${X509}, resource) when { principal has posture };`,
          `@id("bracketed-posture") forbid (principal, ${X509}, resource) when { principal [ "posture" ].contains("disk_encrypted=false") };`,
          '// selectors and posture are only mentioned in this comment',
          `@id("plain") permit (principal, ${X509}, resource);`,
          `@id("string") forbid (principal, ${X509}, resource) when { context.source_ip == ip("10.9.9.9") && "selectors" == "posture" };`,
        ].join('\n'),
      }),
    });
    expect(policiesNeedingAttestationFacts(engine, 'issue_x509').sort()).toEqual(
      ['bracketed', 'bracketed-posture', 'dotted', 'has-posture'].sort(),
    );
    expect(policiesNeedingAttestationFacts(engine, 'issue_jwt')).toEqual([]);
  });
});
