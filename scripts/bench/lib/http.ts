// A small keep-alive HTTP client for the benchmark's own setup and probes (not for load: autocannon does that).
import { Agent, request } from 'node:http';

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: wire JSON, read by the caller that knows its shape
  json: any;
}

export interface HttpClient {
  request(
    method: string,
    path: string,
    opts?: { body?: unknown; form?: Record<string, string>; headers?: Record<string, string> },
  ): Promise<HttpResponse>;
  close(): void;
}

export function httpClient(baseUrl: string, maxSockets = 64): HttpClient {
  const base = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets });
  return {
    request(method, path, opts = {}) {
      let payload: string | undefined;
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      if (opts.form !== undefined) {
        payload = new URLSearchParams(opts.form).toString();
        headers['content-type'] = 'application/x-www-form-urlencoded';
      } else if (opts.body !== undefined) {
        payload = JSON.stringify(opts.body);
        headers['content-type'] = 'application/json';
      }
      if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
      const attempt = (retry: boolean): Promise<HttpResponse> =>
        new Promise<HttpResponse>((resolve, reject) => {
          const req = request(
            { host: base.hostname, port: base.port, method, path, headers, agent },
            (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json: unknown;
                try {
                  json = text ? JSON.parse(text) : undefined;
                } catch {
                  json = undefined;
                }
                resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
              });
              res.on('error', reject);
            },
          );
          req.on('error', (e: NodeJS.ErrnoException) => {
            // A kept-alive socket the server closed just as it was reused: nothing reached the server, retry once.
            if (retry && req.reusedSocket && (e.code === 'ECONNRESET' || e.message === 'socket hang up')) {
              attempt(false).then(resolve, reject);
            } else {
              reject(e);
            }
          });
          req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: timed out`)));
          if (payload !== undefined) req.write(payload);
          req.end();
        });
      return attempt(true);
    },
    close() {
      agent.destroy();
    },
  };
}

/** Runs `fn(i)` for i in [0, n) with at most `concurrency` in flight; results in index order. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  });
  await Promise.all(lanes);
  return out;
}
