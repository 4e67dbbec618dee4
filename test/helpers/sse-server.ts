// A fake broker for relying-party tests: serves a JWKS and a revocation SSE stream that the test drives.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import type { RevocationEvent } from '../../src/store/types.ts';

export interface FakeBrokerOptions {
  jwks: JSONWebKeySet;
  /** `retry` written at the start of every stream, ms. Default 50 (the client's floor). */
  retryMs?: number;
  /** Heartbeat period of every stream; null (the default) sends none unless the test calls heartbeat(). */
  heartbeatMs?: number | null;
}

/** One request of the stream endpoint, as the fake broker saw it. */
export interface StreamRequest {
  /** The `Last-Event-ID` header, if any. */
  lastEventId: string | undefined;
  status: number;
  /** Events replayed on this connection before `ready`. */
  replayed: string[];
}

export class FakeBroker {
  readonly url: string;
  jwks: JSONWebKeySet;
  jwksRequests = 0;
  /** Served as the status of JWKS requests while not 200. */
  jwksStatus = 200;
  /** Served as the status of stream requests while not 200 (the body is then JSON, not a stream). */
  streamStatus = 200;
  /** Whether a stream sends `ready` after its replay. */
  sendReady = true;
  readonly streamRequests: StreamRequest[] = [];
  readonly #server: Server;
  readonly #retryMs: number;
  readonly #heartbeatMs: number | null;
  readonly #open = new Map<ServerResponse, NodeJS.Timeout | undefined>();
  readonly #log: RevocationEvent[] = [];
  #seq = 0;

  private constructor(server: Server, url: string, options: FakeBrokerOptions) {
    this.#server = server;
    this.url = url;
    this.jwks = options.jwks;
    this.#retryMs = options.retryMs ?? 50;
    this.#heartbeatMs = options.heartbeatMs ?? null;
  }

  static async start(options: FakeBrokerOptions): Promise<FakeBroker> {
    let broker: FakeBroker | undefined;
    const server = createServer((req, res) => broker?.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    broker = new FakeBroker(server, `http://127.0.0.1:${port}`, options);
    return broker;
  }

  /** Streams open right now. */
  get openStreams(): number {
    return this.#open.size;
  }

  /** Appends an event to the retained log (giving it the next id) and pushes it to every open stream. */
  revoke(event: Omit<RevocationEvent, 'id'>): RevocationEvent {
    this.#seq++;
    const full: RevocationEvent = { id: `${1_700_000_000_000 + this.#seq}-0`, ...event };
    this.#log.push(full);
    this.sendRaw(formatEvent(full));
    return full;
  }

  heartbeat(time = Date.now()): void {
    this.sendRaw(`event: heartbeat\ndata: ${JSON.stringify({ time })}\n\n`);
  }

  /** Writes text as-is to every open stream. */
  sendRaw(text: string): void {
    for (const res of this.#open.keys()) res.write(text);
  }

  /** Ends every open stream cleanly: the client reads the end of the body. */
  endStreams(): void {
    for (const res of [...this.#open.keys()]) {
      this.#forget(res);
      res.end();
    }
  }

  /** Destroys every open stream's socket: the client sees a network error. */
  destroyStreams(): void {
    for (const res of [...this.#open.keys()]) {
      this.#forget(res);
      res.destroy();
    }
  }

  async close(): Promise<void> {
    this.destroyStreams();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', this.url).pathname;
    if (req.method === 'GET' && path === '/.well-known/jwks.json') {
      this.jwksRequests++;
      res.writeHead(this.jwksStatus, { 'content-type': 'application/json' });
      res.end(this.jwksStatus === 200 ? JSON.stringify(this.jwks) : '{"error":"server_error"}');
      return;
    }
    if (req.method === 'GET' && path === '/v1/revocations/stream') {
      this.#stream(req, res);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"ERR_NOT_FOUND"}');
  }

  #stream(req: IncomingMessage, res: ServerResponse): void {
    const header = req.headers['last-event-id'];
    const lastEventId = typeof header === 'string' ? header : undefined;
    const record: StreamRequest = { lastEventId, status: this.streamStatus, replayed: [] };
    this.streamRequests.push(record);
    if (this.streamStatus !== 200) {
      res.writeHead(this.streamStatus, { 'content-type': 'application/json' });
      res.end('{"error":"temporarily_unavailable"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' });
    res.write(`retry: ${this.#retryMs}\n\n`);
    const from = lastEventId === undefined ? 0 : this.#log.findIndex((e) => e.id === lastEventId) + 1;
    for (const event of this.#log.slice(from)) {
      record.replayed.push(event.id);
      res.write(formatEvent(event));
    }
    if (this.sendReady) {
      const cursor = this.#log.at(-1)?.id ?? '0-0';
      res.write(`event: ready\ndata: ${JSON.stringify({ cursor })}\n\n`);
    }
    let timer: NodeJS.Timeout | undefined;
    if (this.#heartbeatMs !== null) {
      timer = setInterval(
        () => res.write(`event: heartbeat\ndata: {"time":${Date.now()}}\n\n`),
        this.#heartbeatMs,
      );
    }
    this.#open.set(res, timer);
    res.on('close', () => this.#forget(res));
  }

  #forget(res: ServerResponse): void {
    const timer = this.#open.get(res);
    if (timer) clearInterval(timer);
    this.#open.delete(res);
  }
}

export function formatEvent(event: RevocationEvent): string {
  return `id: ${event.id}\nevent: revocation\ndata: ${JSON.stringify(event)}\n\n`;
}
