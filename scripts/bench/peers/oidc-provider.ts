// Peer for scenario 1: panva's oidc-provider minting ES256 JWT access tokens for client_credentials, one process.
// Run: node --import tsx scripts/bench/peers/oidc-provider.ts <port>; prints {"ready":true,"port":N} when listening.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';
import { OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_RESOURCE } from './oidc-constants.ts';

const port = Number(process.argv[2] ?? 0);
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', use: 'sig', alg: 'ES256' };

const server = createServer();
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => {
  const bound = (server.address() as AddressInfo).port;
  const provider = new Provider(`http://127.0.0.1:${bound}`, {
    clients: [
      {
        client_id: OIDC_CLIENT_ID,
        client_secret: OIDC_CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [jwk] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => OIDC_RESOURCE,
        getResourceServerInfo: () => ({
          scope: 'api:read',
          audience: OIDC_RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ ready: true, port: bound })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
