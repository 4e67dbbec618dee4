// The oidc-provider peer's client and resource, shared by the peer process and the load target.
export const OIDC_CLIENT_ID = 'bench-client';
export const OIDC_CLIENT_SECRET = 'bench-client-secret-0123456789abcdef';
export const OIDC_RESOURCE = 'https://api.example';
