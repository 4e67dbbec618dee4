import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_DIR, loadPolicySet, PolicyEngine } from '../../../src/policy/index.ts';
import { request, tuesdayAt } from './fixtures.ts';

const EXAMPLES = join(DEFAULT_POLICY_DIR, 'examples');

describe('example policies', () => {
  it('all validate against the schema, without warnings', async () => {
    const set = await loadPolicySet({ dir: EXAMPLES });
    const files = (await readdir(EXAMPLES)).filter((f) => f.endsWith('.cedar'));
    expect(files.sort()).toEqual(['ci-deploy.cedar', 'kubernetes-service.cedar', 'legacy-system.cedar']);
    expect(new Set(set.policies.map((p) => p.file.split('/').pop()))).toEqual(new Set(files));
    expect(set.warnings).toEqual([]);
  });

  describe('legacy system', () => {
    const legacy = (o: { sourceIp?: string; ttl?: number; audience?: string } = {}) =>
      request({
        principal: {
          spiffeId: 'spiffe://writ.local/legacy/billing-batch',
          attestor: 'static_key',
          selectors: ['static_key:key_id:billing-batch'],
          legacy: true,
          posture: { legacy: true },
        },
        resource: { type: 'Audience', id: o.audience ?? 'https://reports.acme.example' },
        context: { legacy: true, sourceIp: o.sourceIp ?? '198.51.100.7', ttl: o.ttl ?? 300 },
      });

    it('caps a legacy workload at 5 minutes and only from its one host', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      expect(engine.decide(legacy())).toMatchObject({
        decision: 'allow',
        reasons: ['legacy-billing-reports'],
        ttlCap: 300,
        approvalRequired: false,
      });
      expect(engine.decide(legacy({ sourceIp: '198.51.100.8' }))).toMatchObject({
        decision: 'deny',
        reasons: [],
      });
    });

    it('denies a legacy request for more than 5 minutes outright (the context-based cap)', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      expect(engine.decide(legacy({ ttl: 301 }))).toMatchObject({
        decision: 'deny',
        reasons: ['legacy-ttl-fence'],
      });
    });

    it('needs an approval for the billing database', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      expect(engine.decide(legacy({ audience: 'https://billing-db.acme.example' }))).toMatchObject({
        decision: 'allow',
        reasons: ['legacy-billing-db'],
        ttlCap: 300,
        approvalRequired: true,
        approvalPolicies: ['legacy-billing-db'],
      });
    });
  });

  describe('CI deploy job', () => {
    const ci = (o: { selectors?: string[]; sourceIp?: string; now?: number } = {}) =>
      request({
        principal: {
          spiffeId: 'spiffe://writ.local/ci/payments-deploy',
          attestor: 'github_actions',
          selectors: o.selectors ?? [
            'github_actions:repository:acme/payments',
            'github_actions:ref:refs/heads/main',
            'github_actions:event_name:push',
          ],
        },
        resource: { type: 'Audience', id: 'https://deploy.acme.example' },
        context: { sourceIp: o.sourceIp ?? '192.0.2.40', now: o.now ?? tuesdayAt(10), ttl: 900 },
      });

    it('allows main from the runners in business hours, capped at 10 minutes', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      expect(engine.decide(ci())).toMatchObject({
        decision: 'allow',
        reasons: ['ci-deploy-payments'],
        ttlCap: 600,
      });
    });

    it('denies another branch, another network, the night, the weekend and pull requests', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      const main = ['github_actions:repository:acme/payments', 'github_actions:ref:refs/heads/main'];
      expect(engine.decide(ci({ selectors: [main[0]!, 'github_actions:ref:refs/heads/dev'] })).decision).toBe(
        'deny',
      );
      expect(engine.decide(ci({ sourceIp: '203.0.113.5' })).decision).toBe('deny');
      expect(engine.decide(ci({ now: tuesdayAt(20) })).decision).toBe('deny');
      expect(engine.decide(ci({ now: Date.UTC(2026, 0, 10, 10) / 1000 })).decision).toBe('deny');
      expect(
        engine.decide(ci({ selectors: [...main, 'github_actions:event_name:pull_request'] })),
      ).toMatchObject({
        decision: 'deny',
        reasons: ['ci-no-deploy-from-pull-requests'],
      });
    });
  });

  describe('Kubernetes service', () => {
    const orders = {
      spiffeId: 'spiffe://writ.local/ns/orders/sa/orders-api',
      attestor: 'k8s_psat',
      selectors: ['k8s_psat:namespace:orders', 'k8s_psat:service_account:orders-api'],
    };

    it('issues for its audience only', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      const at = (id: string) =>
        engine.decide(request({ principal: orders, resource: { type: 'Audience', id } }));
      expect(at('https://payments.internal')).toMatchObject({
        decision: 'allow',
        reasons: ['k8s-orders-to-payments'],
      });
      expect(at('https://deploy.acme.example').decision).toBe('deny');
      const otherNamespace = {
        ...orders,
        selectors: ['k8s_psat:namespace:web', 'k8s_psat:service_account:orders-api'],
      };
      const d = engine.decide(
        request({
          principal: otherNamespace,
          resource: { type: 'Audience', id: 'https://payments.internal' },
        }),
      );
      expect(d.decision).toBe('deny');
    });

    it('may read the ledger at /v1/authorize with the caller-provided context, never write it', async () => {
      const engine = await PolicyEngine.load({ dir: EXAMPLES });
      const use = (action: string, extra: Record<string, string>) =>
        engine.decide(
          request({
            principal: orders,
            action,
            resource: { type: 'Resource', id: 'payments/ledger' },
            context: { sourceIp: '10.2.3.4', extra },
          }),
        );
      expect(use('read', { env: 'prod' })).toMatchObject({
        decision: 'allow',
        reasons: ['k8s-orders-read-ledger'],
      });
      expect(use('read', { env: 'staging' }).decision).toBe('deny');
      expect(use('write', { env: 'prod' })).toMatchObject({
        decision: 'deny',
        reasons: ['k8s-ledger-read-only'],
      });
    });
  });
});
