// The k8s_psat attestor: a Kubernetes projected service-account token in, the pod's selectors and task out.
import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';
import {
  JwtEvidenceVerifier,
  parseTokenEvidence,
  REASON_BAD_SIGNATURE,
  selector,
  unverifiedClaims,
  type VerifiedJwt,
} from '../../src/attestation/jwt-evidence.ts';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorHost,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import { isTaskId } from '../../src/lifecycle/task-id.ts';
import { type K8sClusterConfig, type K8sPsatConfig, k8sPsatConfigSchema } from './config.ts';

export const NAME = 'k8s_psat';
export const TASK_NAMESPACE = 'k8s';

/** `iss` of the legacy, secret-based tokens: no expiry, not bound to a pod, refused. */
const LEGACY_ISSUER = 'kubernetes/serviceaccount';
const LEGACY =
  'the token is not a projected service account token (legacy tokens are refused; mount a projected token)';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const objectRef = z.looseObject({ name: z.string(), uid: z.string() });
// The `kubernetes.io` claim of a projected token (TokenRequest API).
const kubernetesClaim = z.looseObject({
  namespace: z.string().regex(DNS_LABEL),
  serviceaccount: z.looseObject({ name: z.string().regex(DNS_SUBDOMAIN), uid: z.string().regex(UID) }),
  pod: objectRef.optional(),
  node: objectRef.optional(),
});

export function podTask(cluster: string, podUid: string): string {
  return `${TASK_NAMESPACE}:${cluster}/${podUid}`;
}

export function tokenIssuers(config: K8sPsatConfig): string[] {
  return [...new Set(config.clusters.map((c) => c.issuer))];
}

interface Cluster {
  config: K8sClusterConfig;
  verifier: JwtEvidenceVerifier;
}

class K8sPsatAttestor implements Attestor {
  readonly name = NAME;
  readonly legacy = false;
  readonly taskNamespace = TASK_NAMESPACE;
  readonly #clusters: Cluster[];

  constructor(config: K8sPsatConfig, host: AttestorHost) {
    this.#clusters = config.clusters.map((c) => {
      const audience = c.audience ?? host.issuer;
      if (audience === undefined) {
        throw new Error(
          `attestors.k8s_psat.clusters[${c.name}].audience: required (the broker's issuer is unknown)`,
        );
      }
      const verifier = new JwtEvidenceVerifier(
        {
          attestor: NAME,
          issuer: c.issuer,
          audience,
          jwksUri: c.jwksUri,
          jwks: c.jwks as JSONWebKeySet | undefined,
          algorithms: c.algorithms,
          clockSkew: c.clockSkew,
          maxTokenLifetime: c.maxTokenLifetime,
          singleUse: c.singleUse,
          replayScope: 'k8s_psat_jti',
        },
        host,
      );
      return { config: c, verifier };
    });
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const token = parseTokenEvidence(evidence);
    const unverified = unverifiedClaims(token);
    if (!unverified) throw new AttestationError('the token is malformed');
    // Refusing needs no signature: a legacy token is never accepted, whoever signed it.
    if (
      unverified.iss === LEGACY_ISSUER ||
      unverified.exp === undefined ||
      typeof unverified['kubernetes.io'] !== 'object'
    ) {
      throw new AttestationError(LEGACY);
    }
    const candidates = this.#clusters.filter((c) => c.config.issuer === unverified.iss);
    if (candidates.length === 0) throw new AttestationError('the token issuer is not a configured cluster');
    const { cluster, verified } = await verifyWithAny(candidates, token);

    const k8s = kubernetesClaim.safeParse(verified.claims['kubernetes.io']);
    if (!k8s.success) throw new AttestationError('the token has an invalid kubernetes.io claim');
    const { namespace, serviceaccount, pod, node } = k8s.data;
    if (!pod) throw new AttestationError('the token is not bound to a pod');
    if (!DNS_SUBDOMAIN.test(pod.name) || !UID.test(pod.uid)) {
      throw new AttestationError('the token names an invalid pod');
    }
    // The subject must agree with the claim it summarises.
    if (verified.claims.sub !== `system:serviceaccount:${namespace}:${serviceaccount.name}`) {
      throw new AttestationError('the token subject does not match its service account');
    }
    const name = cluster.config.name;
    const selectors = [
      selector(NAME, 'cluster', name),
      selector(NAME, 'namespace', namespace),
      selector(NAME, 'service_account', serviceaccount.name),
      selector(NAME, 'pod_name', pod.name),
      selector(NAME, 'pod_uid', pod.uid),
    ];
    if (node) {
      if (!DNS_SUBDOMAIN.test(node.name)) throw new AttestationError('the token names an invalid node');
      selectors.push(selector(NAME, 'node_name', node.name));
    }
    const task = podTask(name, pod.uid);
    if (!isTaskId(task)) throw new AttestationError('the pod does not make a valid task id');
    await cluster.verifier.consume(verified);
    return { selectors, task, expiresAt: verified.claims.exp };
  }
}

/**
 * Clusters often share an issuer name (https://kubernetes.default.svc.cluster.local): each candidate's keys
 * are tried in turn, and the first that verifies the signature decides. A failure other than the signature
 * (expired, audience) is final.
 */
async function verifyWithAny(
  candidates: Cluster[],
  token: string,
): Promise<{ cluster: Cluster; verified: VerifiedJwt }> {
  let last: unknown;
  for (const cluster of candidates) {
    try {
      return { cluster, verified: await cluster.verifier.verify(token) };
    } catch (e) {
      if (!(e instanceof AttestationError) || e.reason !== REASON_BAD_SIGNATURE) throw e;
      last = e;
    }
  }
  throw last;
}

export const k8sPsatPlugin: AttestorPlugin<K8sPsatConfig> = {
  name: NAME,
  configSchema: k8sPsatConfigSchema,
  create: (config, host) => new K8sPsatAttestor(config, host),
};
