// An incremental Server-Sent Events parser, per the HTML standard's "event stream interpretation".

/** One dispatched event. */
export interface SseMessage {
  /** The `event` field, or `message` when the event named none. */
  readonly event: string;
  /** Every `data` line of the event, joined with `\n`. */
  readonly data: string;
  /** The stream's last event id at dispatch (it persists across events until an `id` field changes it). */
  readonly lastEventId: string;
}

export interface SseHandlers {
  onMessage(message: SseMessage): void;
  /** A `retry` field with an all-digit value: the reconnection time in milliseconds. */
  onRetry?(ms: number): void;
}

/** Thrown by {@link SseParser.push} when a line or an event's data outgrows the limit. */
export class SseLimitError extends Error {
  constructor(limit: number) {
    super(`event stream line or data exceeds ${limit} characters`);
    this.name = 'SseLimitError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const BOM = 0xfeff;
const DIGITS = /^[0-9]+$/;

/**
 * Feed it the bytes (or text) of one response as they arrive, in chunks of any size: lines may end in
 * `\n`, `\r\n` or `\r`, and a chunk boundary may fall anywhere, even inside a UTF-8 sequence or a CRLF.
 * A byte order mark is skipped at the start of the stream only; comments and unknown fields are ignored;
 * an `id` containing NUL is ignored; an event without data is not dispatched (its `id` still counts); an
 * unterminated event at the end of the stream is discarded.
 */
export class SseParser {
  readonly #handlers: SseHandlers;
  readonly #maxLength: number;
  // The BOM is handled at the text level (once, at the start), so that bytes and text agree.
  readonly #decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  #started = false;
  #skipLf = false;
  #line = '';
  #data = '';
  #eventType = '';
  #idBuffer: string;
  #lastEventId: string;

  /**
   * @param lastEventId the id this stream resumes from (so that an event without `id` keeps it).
   * @param maxLength bound on one line and on one event's data, against a peer that never ends a line.
   */
  constructor(handlers: SseHandlers, lastEventId = '', maxLength = 1 << 20) {
    this.#handlers = handlers;
    this.#idBuffer = lastEventId;
    this.#lastEventId = lastEventId;
    this.#maxLength = maxLength;
  }

  /** The last event id string: what a reconnection sends as `Last-Event-ID`. */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Parses one chunk, dispatching every event it completes. */
  push(chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (text.length === 0) return;
    if (!this.#started) {
      this.#started = true;
      if (text.charCodeAt(0) === BOM) text = text.slice(1);
    }
    let start = 0;
    if (this.#skipLf) {
      this.#skipLf = false;
      if (text.charCodeAt(0) === LF) start = 1;
    }
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      const line = this.#line + text.slice(start, i);
      this.#line = '';
      if (c === CR) {
        // A CRLF split across two chunks must not count as two line ends (that would dispatch early).
        if (i + 1 === text.length) this.#skipLf = true;
        else if (text.charCodeAt(i + 1) === LF) i++;
      }
      start = i + 1;
      this.#processLine(line);
    }
    if (start < text.length) {
      this.#line += text.slice(start);
      if (this.#line.length > this.#maxLength) throw new SseLimitError(this.#maxLength);
    }
  }

  /** The stream ended: an incomplete line or event is discarded, as the standard says. */
  end(): void {
    this.#decoder.decode();
    this.#line = '';
    this.#data = '';
    this.#eventType = '';
  }

  #processLine(line: string): void {
    if (line.length === 0) {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === COLON) return; // a comment
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === SPACE) value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.#eventType = value;
        break;
      case 'data':
        this.#data += `${value}\n`;
        if (this.#data.length > this.#maxLength) throw new SseLimitError(this.#maxLength);
        break;
      case 'id':
        if (!value.includes('\0')) this.#idBuffer = value;
        break;
      case 'retry':
        if (DIGITS.test(value)) this.#handlers.onRetry?.(Number.parseInt(value, 10));
        break;
      default:
      // unknown fields are ignored
    }
  }

  #dispatch(): void {
    this.#lastEventId = this.#idBuffer;
    if (this.#data.length === 0) {
      this.#eventType = '';
      return;
    }
    const message: SseMessage = {
      event: this.#eventType || 'message',
      data: this.#data.slice(0, -1),
      lastEventId: this.#lastEventId,
    };
    this.#data = '';
    this.#eventType = '';
    this.#handlers.onMessage(message);
  }
}
