// The CLI's one HTTP client: fetch with a timeout, JSON in and out, broker errors as ApiError.
//
// The admin token goes only to admin calls (never to workload endpoints) and never into a message; the TOTP
// code goes only to privileged calls. Redirects are refused, so a bearer token never follows one.

/** An error answer of the broker (or of something in front of it), or no answer at all. */
export class ApiError extends Error {
  constructor(
    /** The broker's stable code (`ERR_...`), `http_<status>` for a non-broker answer, or a transport code. */
    readonly code: string,
    readonly description: string,
    /** 0 when there was no HTTP answer. */
    readonly status: number,
    /** The parsed error body, when there was one. */
    readonly body?: Record<string, unknown>,
  ) {
    super(`${code}: ${description}`);
    this.name = 'ApiError';
  }
}

/** A command used wrongly (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ClientOptions {
  /** The broker's base URL (http or https; may carry a path prefix). */
  url: string;
  /** Admin bearer token; required by admin calls only. */
  token?: string | undefined;
  /** A TOTP code for privileged calls (`X-Writ-OTP`). */
  otp?: string | undefined;
  timeoutMs?: number | undefined;
}

export interface CallOptions {
  body?: unknown;
  query?: Record<string, string | number | undefined>;
  /** Send the admin token (default true). */
  admin?: boolean;
  /** Send the TOTP code as well (privileged operations). */
  privileged?: boolean;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_ERROR_TEXT = 300;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Parses and checks a broker URL; a bad one is a usage error. */
export function parseBrokerUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url is not a URL: ${printable(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError('--url must be an http:// or https:// URL');
  if (url.username || url.password) throw new UsageError('--url must not carry credentials');
  if (url.search || url.hash) throw new UsageError('--url must not carry a query or fragment');
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

export class Client {
  readonly base: URL;
  readonly #token: string | undefined;
  readonly #otp: string | undefined;
  readonly #timeoutMs: number;
  #warned = false;

  constructor(opts: ClientOptions) {
    this.base = parseBrokerUrl(opts.url);
    this.#token = opts.token === '' ? undefined : opts.token;
    this.#otp = opts.otp === undefined ? undefined : opts.otp.trim() || undefined;
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** Calls the broker; a 2xx answer (except 202 ERR_APPROVAL_PENDING) is returned, anything else thrown. */
  async call<T = unknown>(method: string, path: string, opts: CallOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.admin ?? true) {
      if (this.#token === undefined)
        throw new UsageError('an admin token is required: set WRIT_ADMIN_TOKEN (or pass --token)');
      this.#warnPlainHttp();
      headers.authorization = `Bearer ${this.#token}`;
      if (opts.privileged && this.#otp !== undefined) headers['x-writ-otp'] = this.#otp;
    }
    let body: string | undefined;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
        ...(body === undefined ? {} : { body }),
      });
    } catch (e) {
      throw transportError(e, this.base, this.#timeoutMs);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw transportError(e, this.base, this.#timeoutMs);
    }
    let parsed: unknown;
    let isJson = false;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
        isJson = true;
      } catch {
        parsed = undefined;
      }
    }
    const errorBody = isJson && isRecord(parsed) && typeof parsed.error === 'string' ? parsed : undefined;
    if (res.ok && errorBody === undefined) {
      if (text !== '' && !isJson) {
        throw new ApiError(`http_${res.status}`, `the answer is not JSON: ${snippet(text)}`, res.status);
      }
      return { status: res.status, body: parsed as T };
    }
    if (errorBody !== undefined) {
      const description =
        typeof errorBody.error_description === 'string' ? errorBody.error_description : 'no description';
      throw new ApiError(errorBody.error as string, description, res.status, errorBody);
    }
    throw new ApiError(
      `http_${res.status}`,
      text === '' ? res.statusText || 'no body' : snippet(text),
      res.status,
    );
  }

  /** The bearer token over plain HTTP to another host can be read on the way: say so, once. */
  #warnPlainHttp(): void {
    if (this.#warned || this.base.protocol !== 'http:' || LOOPBACK.has(this.base.hostname)) return;
    this.#warned = true;
    process.stderr.write(
      `warning: sending the admin token over plain HTTP to ${this.base.host}; use https:// outside a trusted network\n`,
    );
  }
}

function transportError(e: unknown, base: URL, timeoutMs: number): ApiError {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError') {
    return new ApiError('timeout', `no answer from ${base.origin} within ${timeoutMs / 1000} s`, 0);
  }
  const cause = err?.cause;
  const detail = cause?.message ?? cause?.code ?? err?.message ?? String(e);
  const tls = typeof cause?.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(cause.code);
  return new ApiError(
    'unreachable',
    `cannot reach ${base.origin}: ${printable(detail)}${
      tls ? " (trust the broker's CA with NODE_EXTRA_CA_CERTS=<its /v1/bundle.pem>)" : ''
    }`,
    0,
  );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function snippet(text: string): string {
  const one = printable(text.replace(/\s+/g, ' ').trim());
  return one.length > MAX_ERROR_TEXT ? `${one.slice(0, MAX_ERROR_TEXT)}...` : one;
}

/** Text from the network made safe for a terminal: no control characters (escape sequences) but newlines. */
export function printable(text: string): string {
  return text.replace(/[\p{Cc}\u2028\u2029]/gu, (c) => (c === '\n' ? '\n' : c === '\t' ? ' ' : '?'));
}

/** A path segment: ids may hold `/` and `:` (platform task ids), which the broker decodes. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
