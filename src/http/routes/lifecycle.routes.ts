// Task completion, self-revocation (RFC 7009) and the public revocation feed (JSON pages and SSE).
import express, { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import { verifyLiveToken } from '../../lifecycle/introspect.ts';
import { REASON_HOLDER } from '../../lifecycle/lifecycle.service.ts';
import { compareEventIds, EVENT_ID_PATTERN, isEventId } from '../../lifecycle/revocation-feed.ts';
import { isTaskId } from '../../lifecycle/task-id.ts';
import type { RevocationEvent } from '../../store/types.ts';

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;

/** Authenticates the caller by a live JWT-SVID of the task in the path, addressed to this broker. */
function taskBearer(deps: Deps): RequestHandler {
  return async function taskBearerStep(req, res, next) {
    const task = req.params.task;
    if (typeof task !== 'string' || !isTaskId(task)) throw new WritError('ERR_NOT_FOUND', 'no such task');
    const match = BEARER.exec(req.get('authorization') ?? '');
    const invalid = () => {
      res.set('WWW-Authenticate', 'Bearer error="invalid_token"');
      return new WritError(
        'ERR_TOKEN_INVALID',
        'a live JWT-SVID of this task, with this broker in its audience, is required',
      );
    };
    if (!match) throw invalid();
    const live = await verifyLiveToken(deps, match[1]!);
    if (!live) throw invalid();
    // A token addressed to a relying party must not let that party end the workload's task.
    const aud = live.view.credential.audience;
    if (!aud.includes(deps.issuer)) throw invalid();
    if (live.payload.task !== task)
      throw new WritError('ERR_TASK_MISMATCH', 'the token belongs to another task');
    res.locals.task = task;
    res.locals.caller = live.payload.sub;
    next();
  };
}

function completeTask(deps: Deps): RequestHandler {
  return async function completeTaskStep(_req, res) {
    const task = await deps.lifecycle.completeTask(
      res.locals.task as string,
      `workload:${res.locals.caller}`,
    );
    deps.logger.info({ reqId: res.locals.reqId, task: task.id, by: res.locals.caller }, 'task completed');
    res.status(202).json({ task: task.id, status: task.status, endedAt: task.endedAt });
  };
}

const revokeBody = z.looseObject({
  token: z.string().min(1).max(8192),
  token_type_hint: z.string().max(64).optional(),
});

/** RFC 7009: the holder revokes its own token; the answer is 200 whether or not the token was valid. */
function oauthRevoke(deps: Deps): RequestHandler {
  return async function oauthRevokeStep(req, res) {
    if (!req.is('application/x-www-form-urlencoded')) {
      throw new WritError('invalid_request', 'send token= as application/x-www-form-urlencoded');
    }
    const body = revokeBody.safeParse(req.body);
    if (!body.success) throw new WritError('invalid_request', 'the token parameter is required');
    const live = await verifyLiveToken(deps, body.data.token);
    if (live) {
      await deps.lifecycle.revokeCredential(
        live.payload.jti,
        REASON_HOLDER,
        live.payload.task,
        `workload:${live.payload.sub}`,
      );
    }
    res.status(200).set('Cache-Control', 'no-store').end();
  };
}

const sinceQuery = z.strictObject({
  since: z
    .string()
    .regex(EVENT_ID_PATTERN, 'since is an event id')
    .refine(isEventId, 'since is an event id')
    .optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(1000),
});

function listRevocations(deps: Deps): RequestHandler {
  return async function listRevocationsStep(req, res) {
    const q = sinceQuery.safeParse(req.query);
    if (!q.success) throw new WritError('invalid_request', q.error.issues[0]?.message ?? 'invalid query');
    const events = await deps.store.readRevocations(q.data.since, q.data.limit + 1);
    const more = events.length > q.data.limit;
    const page = events.slice(0, q.data.limit);
    const cursor = page.length > 0 ? page[page.length - 1]!.id : (q.data.since ?? '0-0');
    res.set('Cache-Control', 'no-store').json({ events: page, cursor, more });
  };
}

function sseMessage(event: RevocationEvent): string {
  return `id: ${event.id}\nevent: revocation\ndata: ${JSON.stringify(event)}\n\n`;
}

// A subscriber that does not read its stream is dropped rather than buffered without bound; it reconnects
// with Last-Event-ID and catches up.
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const REPLAY_PAGE = 1000;

/** Resolves when the socket can take more, or is gone; leaves no listener behind. */
function drainedOrClosed(res: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * SSE: subscribe to the live hub first (buffering), replay from the cursor out of the store page by page
 * (waiting for the socket to drain, so a large backlog neither sits in memory nor trips the slow-reader
 * cap), flush the buffer without duplicates, announce `ready`, then stream live events with heartbeats.
 */
function revocationStream(deps: Deps): RequestHandler {
  return async function revocationStreamStep(req, res) {
    const header = req.get('last-event-id');
    const query = typeof req.query.since === 'string' ? req.query.since : undefined;
    const since = header ?? query;
    if (since !== undefined && since !== '' && !isEventId(since)) {
      throw new WritError('invalid_request', 'Last-Event-ID is not an event id');
    }
    const { maxSubscribers, maxSubscribersPerAddress } = deps.config.revocationFeed;
    const address = req.ip ?? 'unknown';
    if (deps.feed.subscribers >= maxSubscribers) {
      throw new WritError('ERR_FEED_BUSY', 'too many feed subscribers; retry later');
    }
    if (deps.feed.subscribersFrom(address) >= maxSubscribersPerAddress) {
      throw new WritError('ERR_RATE_LIMITED', 'too many feed subscribers from this address');
    }
    // A cursor ahead of the feed (a restored Redis, a clock rollback, another broker's id) would filter out
    // every real event: replay from the start instead.
    let last = since || undefined;
    if (last !== undefined && compareEventIds(last, await deps.store.lastRevocationId()) > 0)
      last = undefined;

    let live = false;
    const buffered: RevocationEvent[] = [];
    const format = (events: RevocationEvent[]): string => {
      let chunk = '';
      for (const e of events) {
        if (last !== undefined && compareEventIds(e.id, last) <= 0) continue;
        chunk += sseMessage(e);
        last = e.id;
      }
      return chunk;
    };
    const writeLive = (events: RevocationEvent[]) => {
      const chunk = format(events);
      if (chunk) res.write(chunk);
      // A live subscriber that does not read is dropped; it reconnects with Last-Event-ID and catches up.
      if (res.writableLength > MAX_BUFFERED_BYTES) res.destroy();
    };
    const unsubscribe = deps.feed.subscribe((events) => {
      if (live) writeLive(events);
      else buffered.push(...events);
    });
    let heartbeat: NodeJS.Timeout | undefined;
    const untrack = deps.feed.track(res, address);
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(heartbeat);
      unsubscribe();
      untrack();
    };
    res.on('close', stop);

    try {
      // The first page is read before the headers go out, so a store outage is a clean 503.
      let page = await deps.store.readRevocations(last, REPLAY_PAGE);
      res.status(200).set({
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-store',
        'X-Accel-Buffering': 'no',
        Connection: 'keep-alive',
      });
      res.flushHeaders();
      res.write('retry: 1000\n\n');
      heartbeat = setInterval(() => {
        res.write(`event: heartbeat\ndata: {"time":${deps.clock()}}\n\n`);
      }, deps.config.revocationFeed.heartbeatMs);
      for (;;) {
        const chunk = format(page);
        if (chunk && !res.write(chunk)) await drainedOrClosed(res);
        if (stopped || page.length < REPLAY_PAGE) break;
        page = await deps.store.readRevocations(last, REPLAY_PAGE);
      }
      if (stopped) return;
      const rest = format(buffered.splice(0));
      if (rest) res.write(rest);
      live = true;
      res.write(`event: ready\ndata: ${JSON.stringify({ cursor: last ?? '0-0' })}\n\n`);
    } catch (err) {
      stop();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      throw err;
    }
  };
}

export function lifecycleRoutes(deps: Deps): Router {
  const router = Router();
  const form = express.urlencoded({
    extended: false,
    limit: deps.config.server.bodyLimit,
    parameterLimit: 10,
  });
  router.post('/v1/tasks/:task/complete', taskBearer(deps), completeTask(deps));
  router.post('/oauth2/revoke', form, oauthRevoke(deps));
  router.get('/v1/revocations', listRevocations(deps));
  router.get('/v1/revocations/stream', revocationStream(deps));
  return router;
}
