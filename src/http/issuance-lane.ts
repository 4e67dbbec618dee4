// The issuance lane: the common form of `POST /v1/svid/jwt` and `POST /v1/svid/x509` served on node:http with
// the very steps of their express routes. Express's request handling costs ~75 µs of CPU per request and its JSON
// parser ~30 µs more on this machine, against ~25 µs for node:http alone (measured side by side, see
// docs/performance.md): as much as attestation, policy, signing and recording together. Everything else, and
// any issuance request out of the common form, goes to the express app unchanged.
import type { IncomingMessage, RequestListener } from 'node:http';
import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import proxyaddr from 'proxy-addr';
import type { Deps } from '../deps.ts';
import { WritError } from '../errors.ts';
import { errorHandler } from './middleware.ts';

/** The lane's routes: exact request path -> the steps after the body is read (those of the express route). */
export type LaneRoutes = ReadonlyMap<string, readonly RequestHandler[]>;

/**
 * Wraps `app`: a POST to one of `routes`' paths, exactly (no query, no trailing slash), with a UTF-8 JSON body
 * sent as is (no content coding), a body announced by its headers, and a Content-Length within the limit, is
 * served here; the express app answers every other request. The lane's answers are the route's: the request log
 * (`requestLog`) first, the same body rules as express.json (strict, the same limit, the same errors), `req.ip`
 * from express's own trust-proxy function, then the route's steps in order, and errors through the app's error
 * handler.
 */
export function issuanceLane(
  deps: Deps,
  app: Express,
  requestLog: RequestHandler,
  routes: LaneRoutes,
): RequestListener {
  const limit = deps.config.server.bodyLimit;
  const onError = errorHandler(deps);
  // Compiled by express from `trust proxy` when the app set it; req.ip is proxyaddr(req, this function).
  const trust = app.get('trust proxy fn') as (addr: string, i: number) => boolean;
  return function writRequest(req, res) {
    const steps = req.method === 'POST' ? routes.get(req.url ?? '') : undefined;
    if (steps === undefined || !commonForm(req, limit)) {
      app(req, res);
      return;
    }
    const r = req as unknown as Request;
    const s = res as unknown as Response;
    // What the steps read of express: res.locals, req.ip and req.body (node:http has none of them).
    s.locals = { route: req.url };
    Object.defineProperty(r, 'ip', { value: proxyaddr(req, trust), enumerable: true });
    const fail = (err: unknown) => onError(err, r, s, () => {});
    run([requestLog], r, s, (err) => {
      if (err !== undefined) {
        fail(err);
        return;
      }
      readJson(req, limit).then((body) => {
        r.body = body;
        run(steps, r, s, (e) => fail(e ?? new WritError('ERR_NOT_FOUND')));
      }, fail);
    });
  };
}

/**
 * The Content-Types the lane takes: `application/json`, bare or with one `charset=utf-8` (quoted or not, any case).
 * isJsonBody alone is looser than body-parser's own charset rule (the first charset, unquoted, must start with
 * "utf-" and be a known encoding): `charset=utf8`, `charset="utf-8;x"` pass isJsonBody, yet express answers 415.
 * Every other form, however rare, goes to express, whose answer is then the only one.
 */
const LANE_CONTENT_TYPE = /^application\/json[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*(?:utf-8|"utf-8")[ \t]*)?$/i;

/** Headers only: the requests whose body the lane reads as express.json would, with the same outcome. */
function commonForm(req: IncomingMessage, limit: number): boolean {
  const type = req.headers['content-type'];
  // Narrower than isJsonBody (which the express route applies): what passes here passes there.
  if (type === undefined || !LANE_CONTENT_TYPE.test(type)) return false;
  const coding = req.headers['content-encoding'];
  if (coding !== undefined && coding.toLowerCase() !== 'identity') return false; // inflated by body-parser
  const length = req.headers['content-length'];
  if (length === undefined) return req.headers['transfer-encoding'] !== undefined; // no body: express's answer
  return /^\d{1,9}$/.test(length) && Number(length) <= limit; // a larger one: express's 413
}

/**
 * Runs express-style steps in order as express 5 does: `next()` goes on, `next(err)` or a thrown error or a
 * rejected promise stops with `err`, `next('route')` or `next('router')` with express's 404; `done()` when every
 * step called `next()`.
 */
function run(
  steps: readonly RequestHandler[],
  req: Request,
  res: Response,
  done: (err?: unknown) => void,
  at = 0,
): void {
  const step = steps[at];
  if (step === undefined) {
    done();
    return;
  }
  let called = false;
  const next: NextFunction = (err?: unknown) => {
    if (called) return;
    called = true;
    if (err === undefined || err === null) run(steps, req, res, done, at + 1);
    // Express leaves the route for the next router, and no other router serves a lane path: its 404.
    else if (err === 'route' || err === 'router') done(new WritError('ERR_NOT_FOUND'));
    else done(err);
  };
  try {
    const result: unknown = step(req, res, next);
    if (result instanceof Promise) result.catch((e: unknown) => next(e ?? new Error('rejected step')));
  } catch (e) {
    next(e);
  }
}

const JSON_WHITESPACE = /^[ \t\n\r]*/;

/**
 * The body as express.json({strict: true, limit}) reads a UTF-8 body: a leading BOM dropped, an empty body is
 * `{}`, anything but an object or array (after whitespace) or text that is not JSON is refused; over the limit
 * is 413, answered (as body-parser does) once the rest of the body has been read off. The errors are those the
 * app's error handler gives for body-parser's.
 */
function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const stop = (error: WritError) => {
      if (settled) return;
      settled = true;
      reject(error);
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else chunks = []; // read off, kept no longer
    });
    req.on('aborted', () => stop(new WritError('invalid_request', 'the request was aborted')));
    req.on('error', () => stop(new WritError('invalid_request')));
    req.on('end', () => {
      if (settled) return;
      settled = true;
      if (size > limit) {
        reject(new WritError('ERR_BODY_TOO_LARGE'));
        return;
      }
      let text = (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)).toString('utf8');
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      if (text.length === 0) {
        resolve({});
        return;
      }
      const first = text.charAt(JSON_WHITESPACE.exec(text)?.[0].length ?? 0);
      try {
        if (first !== '{' && first !== '[') throw new SyntaxError('not an object or array');
        resolve(JSON.parse(text));
      } catch {
        reject(new WritError('invalid_request', 'the body is not valid JSON'));
      }
    });
  });
}
