// Starts private redis-server processes for tests: the global setup's server and fault tests (stop, kill, restart
// on the same AOF directory).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface RedisServer {
  url: string;
  port: number;
  /** Working directory (AOF files live here when appendonly is on). */
  dir: string;
  /** Graceful shutdown (SIGTERM: Redis flushes its AOF), resolved when the process has exited. */
  stop(): Promise<void>;
  /** Crash: SIGKILL, no flush. */
  kill(): void;
}

export interface StartRedisServerOptions {
  appendonly?: boolean;
  /** Reuse a directory, e.g. to restart on the AOF a stopped or killed server left. */
  dir?: string;
  /** A fixed port, e.g. to restart where clients will reconnect; a free one by default. */
  port?: number;
  /** More redis-server arguments (e.g. `['--zset-max-listpack-value', '128']`). */
  args?: string[];
}

export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServer> {
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'writ-redis-')));
  let lastError: unknown;
  // A free port can be taken between probing and binding; try a few.
  for (let attempt = 0; attempt < (opts.port === undefined ? 3 : 1); attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      return await launch(port, dir, opts.appendonly ?? false, opts.args ?? []);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function launch(port: number, dir: string, appendonly: boolean, extra: string[]): Promise<RedisServer> {
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push('--appendonly', appendonly ? 'yes' : 'no', '--appendfsync', 'always', ...extra);
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (spawnError || hasExited(child) || Date.now() > deadline) {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
      const reason = spawnError
        ? spawnError.message
        : hasExited(child)
          ? 'it exited'
          : 'it did not answer in 10 s';
      throw new Error(`could not start redis-server on port ${port}: ${reason}\n${output}`, {
        cause: spawnError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    async stop() {
      if (!hasExited(child)) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      process.off('exit', killOnExit);
    },
    kill() {
      child.kill('SIGKILL');
      process.off('exit', killOnExit);
    },
  };
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** True when a Redis on 127.0.0.1:port answers PING with PONG (not LOADING or an error). */
export async function answersPing(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * Starts a server again on a given port (and dir), retrying while the port is still held by the one that
 * was just killed (its exit is asynchronous).
 */
export async function restartRedisServer(
  opts: StartRedisServerOptions & { port: number },
): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return await startRedisServer(opts);
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw lastError;
}
