// Configuration of the x509pop attestor: the CAs that workload certificates must chain to, and nonce lifetime.
import { z } from 'zod';
import { loadTrustAnchors } from './chain.ts';

export const x509PopConfigSchema = z
  .strictObject({
    caBundle: z
      .string()
      .max(1024 * 1024)
      .optional()
      .describe('PEM of the CA certificates that workload chains must lead to (this or caFile).'),
    caFile: z
      .string()
      .min(1)
      .optional()
      .describe('A PEM file of the CA certificates, read at start (this or caBundle).'),
    nonceTtl: z
      .number()
      .int()
      .min(5)
      .max(600)
      .default(60)
      .describe('Lifetime of a challenge nonce, seconds; each nonce is also single use.'),
  })
  .superRefine((c, ctx) => {
    if ((c.caBundle === undefined) === (c.caFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['caBundle'], message: 'set exactly one of caBundle and caFile' });
      return;
    }
    if (c.caBundle !== undefined) {
      try {
        loadTrustAnchors(c.caBundle);
      } catch (e) {
        ctx.addIssue({ code: 'custom', path: ['caBundle'], message: (e as Error).message });
      }
    }
  })
  .describe(
    'The x509pop attestor: an X.509 certificate chain and proof of possession of its key. Configuring this section enables it.',
  );

export type X509PopConfig = z.output<typeof x509PopConfigSchema>;
