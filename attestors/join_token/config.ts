// Configuration of the join_token attestor.
import { z } from 'zod';

const DAY = 86_400;

export const joinTokenConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Accept join tokens as attestation evidence.'),
    defaultTtl: z
      .number()
      .int()
      .min(1)
      .max(30 * DAY)
      .default(600)
      .describe('Lifetime of a join token when the admin names none, seconds.'),
    maxTtl: z
      .number()
      .int()
      .min(1)
      .max(30 * DAY)
      .default(DAY)
      .describe('Longest lifetime an admin may give a join token, seconds.'),
  })
  .describe('The join_token attestor: single-use tokens an admin creates for one SPIFFE ID.');

export type JoinTokenConfig = z.output<typeof joinTokenConfigSchema>;
