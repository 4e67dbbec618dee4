// How the broker serves: HTTPS with configured files (reloaded on change) or with a server certificate of its
// own CA (renewed before expiry), or plain HTTP (dev mode, or production behind a TLS-terminating proxy). Over
// HTTPS it asks clients for a certificate (never requires one), verified against the broker's X.509 roots.
import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Mode } from '../config/loader.ts';
import type { WritConfig } from '../config/schema.ts';
import type { CertificateAuthority } from '../keys/x509/ca.ts';
import { type Clock, seconds } from '../store/types.ts';

export type Transport =
  | { kind: 'http' }
  | { kind: 'https-files'; certFile: string; keyFile: string }
  | { kind: 'https-issued' };

export type BrokerServer = HttpServer | HttpsServer;

/** `server.tls` files win; else production serves HTTPS with its own certificate unless `insecureHttp`. */
export function chooseTransport(config: WritConfig, mode: Mode): Transport {
  const { tls, insecureHttp } = config.server;
  if (tls) return { kind: 'https-files', certFile: tls.certFile, keyFile: tls.keyFile };
  if (mode === 'production' && !insecureHttp) return { kind: 'https-issued' };
  return { kind: 'http' };
}

export function schemeOf(transport: Transport): 'http' | 'https' {
  return transport.kind === 'http' ? 'http' : 'https';
}

/**
 * The server, not yet listening. An HTTPS server starts without a certificate: `startTls` installs one once
 * the CA is ready (the issuer, and so the CA's CRL URL, depends on the port bound), before any handler.
 * With `clientCertificates: 'optional'` it asks every client for a certificate and lets the handshake
 * succeed without one or with one that does not verify: only routes that need it (mTLS renewal) look at
 * `socket.authorized` and the certificate.
 */
export function createBrokerServer(
  transport: Transport,
  clientCertificates: 'optional' | 'off' = 'off',
): BrokerServer {
  if (transport.kind === 'http') return createHttpServer();
  // HTTP/1.1 only; TLS 1.2 and up (Node's defaults also refuse anything older).
  return createHttpsServer({
    minVersion: 'TLSv1.2',
    ALPNProtocols: ['http/1.1'],
    requestCert: clientCertificates === 'optional',
    rejectUnauthorized: false,
  });
}

export interface TlsDeps {
  config: WritConfig;
  ca: CertificateAuthority;
  issuer: string;
  clock: Clock;
  logger: Logger;
  /** How often `server.tls` files are checked for changes (default 1 s). */
  reloadIntervalMs?: number | undefined;
  /**
   * The current trust anchors (PEM) for client certificates (`clientTrustAnchors` of the broker's X.509
   * authorities); absent or with `server.clientCertificates: off`, client certificates are not trusted.
   */
  clientTrust?: (() => readonly string[]) | undefined;
  /** How often the client trust anchors are compared with the installed ones (default 5 s). */
  trustCheckIntervalMs?: number | undefined;
}

export interface TlsController {
  /** The certificate (PEM, leaf first) being served. */
  readonly certificatePem: string;
  /** The client trust anchors (PEM) installed. */
  readonly clientTrustPem: readonly string[];
  /**
   * Rebuilds the secure context with the current client trust anchors, keeping the server certificate. Call
   * it after a CA rotation; the controller also does so by itself when it sees the anchors change. New
   * connections use the new anchors; a session ticket of the old context is not resumed.
   */
  refreshTrust(): void;
  /**
   * The CA ring changed: a self-issued server certificate is issued anew from the current CA (the new root was
   * published before it became current), and the client trust anchors are refreshed.
   */
  caChanged(): void;
  close(): void;
}

/** Installs the first certificate (or throws: the broker does not start without one) and keeps it fresh. */
export function startTls(
  server: BrokerServer,
  transport: Transport,
  deps: TlsDeps,
): TlsController | undefined {
  if (transport.kind === 'http') return undefined;
  const https = server as HttpsServer;
  return transport.kind === 'https-files'
    ? new FileCertificate(https, transport, deps)
    : new IssuedCertificate(https, deps);
}

/** The anchors to trust for client certificates now ([] when none are). */
function currentClientTrust(deps: TlsDeps): readonly string[] {
  if (deps.config.server.clientCertificates !== 'optional' || !deps.clientTrust) return [];
  return deps.clientTrust();
}

function sameAnchors(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((pem, i) => pem === b[i]);
}

/**
 * The secure context options common to both kinds: version floor, no TLS 1.2 renegotiation (a renegotiated
 * handshake could change the client certificate, and Node never clears `socket.authorized` once set), and
 * the client trust anchors: always given, even none, since without `ca` Node trusts its public root store.
 */
function contextOptions(
  identity: { key: string; cert: string },
  anchors: readonly string[],
): SecureContextOptions {
  return {
    ...identity,
    minVersion: 'TLSv1.2',
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
    ca: [...anchors],
  };
}

/**
 * Watches the client trust anchors and calls `refresh` when they change (a CA rotation on any replica).
 * Errors are logged; the installed context stays.
 */
function watchTrust(deps: TlsDeps, installed: () => readonly string[], refresh: () => void): NodeJS.Timeout {
  const timer = setInterval(() => {
    try {
      if (!sameAnchors(currentClientTrust(deps), installed())) refresh();
    } catch (err) {
      deps.logger.error(
        { err },
        'https: cannot refresh the client trust anchors; keeping the installed ones',
      );
    }
  }, deps.trustCheckIntervalMs ?? 5_000);
  timer.unref();
  return timer;
}

/** The names of the broker's own certificate: `server.tlsNames` and the issuer URL's host. */
export function serverNames(
  config: WritConfig,
  issuer: string,
): { dnsNames: string[]; ipAddresses: string[] } {
  const names = new Set(config.server.tlsNames.map((n) => n.toLowerCase()));
  const host = new URL(issuer).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host) names.add(host);
  const all = [...names];
  return { dnsNames: all.filter((n) => isIP(n) === 0), ipAddresses: all.filter((n) => isIP(n) !== 0) };
}

type Identity = { key: string; cert: string };

/**
 * What both kinds share: the server's identity (key and chain) installed with the current client trust
 * anchors, re-installed when the anchors change (a CA rotation), and the watcher that notices that by itself.
 */
abstract class TrustingController {
  protected readonly server: HttpsServer;
  protected readonly deps: TlsDeps;
  #identity: Identity | undefined;
  #anchors: readonly string[] = [];
  #trustTimer: NodeJS.Timeout | undefined;

  constructor(server: HttpsServer, deps: TlsDeps) {
    this.server = server;
    this.deps = deps;
  }

  /** Called once the first identity is installed (a subclass's constructor). */
  protected watchTrust(): void {
    this.#trustTimer = watchTrust(
      this.deps,
      () => this.#anchors,
      () => this.refreshTrust(),
    );
  }

  get clientTrustPem(): readonly string[] {
    return this.#anchors;
  }

  refreshTrust(): void {
    if (!this.#identity) return;
    this.install(this.#identity);
    this.deps.logger.info({ anchors: this.#anchors.length }, 'https: client trust anchors installed');
  }

  /** Installs `identity` with the current anchors; `check` first builds the context (a pair from files). */
  protected install(identity: Identity, check = false): void {
    const anchors = currentClientTrust(this.deps);
    const options = contextOptions(identity, anchors);
    // Checked before it is installed: a mismatched or broken pair never replaces a working one.
    if (check) createSecureContext(options);
    this.server.setSecureContext(options);
    this.#identity = identity;
    this.#anchors = anchors;
  }

  close(): void {
    clearInterval(this.#trustTimer);
  }
}

class IssuedCertificate extends TrustingController implements TlsController {
  #timer: NodeJS.Timeout | undefined;
  #pem = '';
  /** The key id of the CA that issued the certificate served. */
  #issuer: string | undefined;
  #closed = false;

  constructor(server: HttpsServer, deps: TlsDeps) {
    super(server, deps);
    this.#renew();
    this.watchTrust();
  }

  get certificatePem(): string {
    return this.#pem;
  }

  caChanged(): void {
    if (this.#closed) return;
    // The CA that issues is the same (a next CA was added, a retired one dropped): only the anchors changed.
    if (this.deps.ca.keyId === this.#issuer) {
      this.refreshTrust();
      return;
    }
    if (this.#timer) clearTimeout(this.#timer);
    try {
      this.#renew();
    } catch (err) {
      this.deps.logger.error(
        { err },
        'https: cannot issue a server certificate from the new ca; retrying in 60 s',
      );
      this.#schedule(60_000);
    }
  }

  /** Issues a fresh certificate and schedules the next one for when a third of its lifetime remains. */
  #renew(): void {
    const { ca, config, clock, logger, issuer } = this.deps;
    const now = seconds(clock);
    const cert = ca.issueServerCertificate({
      ...serverNames(config, issuer),
      notAfter: now + config.server.tlsCertTtl,
      now,
      backdate: config.credentials.backdate,
    });
    if (!cert.privateKeyPem) throw new Error('the ca returned no server key');
    const chain = [cert.pem, ...ca.chainPem].join('');
    this.install({ key: cert.privateKeyPem, cert: chain });
    this.#pem = chain;
    this.#issuer = ca.keyId;
    logger.info(
      { serial: cert.serialHex, notAfter: new Date(cert.notAfter * 1000).toISOString() },
      'https: server certificate issued',
    );
    const life = cert.notAfter - now;
    this.#schedule(Math.max(1, Math.floor((life * 2) / 3)) * 1000);
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    // setTimeout holds at most 2^31-1 ms (24.8 days): longer waits are taken in steps.
    this.#timer = setTimeout(
      () => {
        try {
          this.#renew();
        } catch (err) {
          this.deps.logger.error({ err }, 'https: renewing the server certificate failed; retrying in 60 s');
          this.#schedule(60_000);
        }
      },
      Math.min(ms, 2 ** 31 - 1),
    );
    this.#timer.unref();
  }

  override close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    super.close();
  }
}

class FileCertificate extends TrustingController implements TlsController {
  readonly #files: { certFile: string; keyFile: string };
  readonly #logger: Logger;
  readonly #timer: NodeJS.Timeout;
  /** The files' stat signature last tried, so that a bad pair is reported once, and retried when it changes. */
  #tried: string;
  #pem = '';

  constructor(server: HttpsServer, files: { certFile: string; keyFile: string }, deps: TlsDeps) {
    super(server, deps);
    this.#files = files;
    this.#logger = deps.logger;
    this.#tried = this.#signature();
    // At start a bad pair is fatal: the broker must not listen without a certificate.
    this.#load();
    this.#timer = setInterval(() => this.#check(), deps.reloadIntervalMs ?? 1_000);
    this.#timer.unref();
    this.watchTrust();
  }

  get certificatePem(): string {
    return this.#pem;
  }

  caChanged(): void {
    try {
      this.refreshTrust();
    } catch (err) {
      this.#logger.error(
        { err },
        'https: cannot refresh the client trust anchors; keeping the installed ones',
      );
    }
  }

  #signature(): string {
    return [this.#files.certFile, this.#files.keyFile]
      .map((file) => {
        try {
          const s = statSync(file);
          return `${s.ino}:${s.size}:${s.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }

  #load(): void {
    let identity: Identity;
    try {
      identity = {
        cert: readFileSync(this.#files.certFile, 'utf8'),
        key: readFileSync(this.#files.keyFile, 'utf8'),
      };
    } catch (e) {
      throw new Error(`cannot read server.tls files: ${(e as Error).message}`);
    }
    this.install(identity, true);
    this.#pem = identity.cert;
  }

  #check(): void {
    const signature = this.#signature();
    if (signature === this.#tried) return;
    this.#tried = signature;
    try {
      this.#load();
      this.#logger.info({ certFile: this.#files.certFile }, 'https: server certificate reloaded');
    } catch (err) {
      this.#logger.error(
        { err, certFile: this.#files.certFile },
        'https: cannot reload server.tls files; still serving the previous certificate',
      );
    }
  }

  override close(): void {
    clearInterval(this.#timer);
    super.close();
  }
}
