import { describe, expect, it } from 'vitest';
import { SseLimitError, type SseMessage, SseParser } from '../../../src/verify/sse-parser.ts';

function parse(
  chunks: Array<string | Uint8Array>,
  lastEventId = '',
): { messages: SseMessage[]; retries: number[]; parser: SseParser } {
  const messages: SseMessage[] = [];
  const retries: number[] = [];
  const parser = new SseParser(
    { onMessage: (m) => messages.push(m), onRetry: (ms) => retries.push(ms) },
    lastEventId,
  );
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  return { messages, retries, parser };
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const byteByByte = (text: string): Uint8Array[] => [...bytes(text)].map((b) => Uint8Array.of(b));

const STREAM =
  'retry: 1000\n\n' +
  'id: 1-0\nevent: revocation\ndata: {"a":"é€😀"}\n\n' +
  ': keep-alive\n' +
  'event: ready\ndata: {"cursor":"1-0"}\n\n' +
  'event: heartbeat\ndata: {"time":1}\n\n';

const EXPECTED: SseMessage[] = [
  { event: 'revocation', data: '{"a":"é€😀"}', lastEventId: '1-0' },
  { event: 'ready', data: '{"cursor":"1-0"}', lastEventId: '1-0' },
  { event: 'heartbeat', data: '{"time":1}', lastEventId: '1-0' },
];

describe('SseParser', () => {
  it('parses a stream: fields, event types, retry, the last event id carried forward', () => {
    const { messages, retries, parser } = parse([STREAM]);
    expect(messages).toEqual(EXPECTED);
    expect(retries).toEqual([1000]);
    expect(parser.lastEventId).toBe('1-0');
  });

  it.each([
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('accepts %s line endings', (_name, eol) => {
    expect(parse([STREAM.replaceAll('\n', eol)]).messages).toEqual(EXPECTED);
  });

  it('accepts mixed line endings in one stream', () => {
    const { messages } = parse(['data: a\r\ndata: b\rdata: c\n\r\n', 'data: d\r\r']);
    expect(messages.map((m) => m.data)).toEqual(['a\nb\nc', 'd']);
  });

  it('is indifferent to chunk boundaries: byte by byte, across CRLF and inside UTF-8 sequences', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = STREAM.replaceAll('\n', eol);
      expect(parse(byteByByte(text)).messages).toEqual(EXPECTED);
      expect(parse([...text]).messages).toEqual(EXPECTED);
    }
  });

  it('a CRLF split between chunks ends one line, not two', () => {
    const { messages } = parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']);
    expect(messages).toEqual([{ event: 'message', data: 'a\nb', lastEventId: '' }]);
  });

  it('joins multi-line data with \\n and keeps empty data lines', () => {
    const { messages } = parse(['data: line 1\ndata: line 2\ndata\ndata:\ndata: end\n\n']);
    expect(messages[0]?.data).toBe('line 1\nline 2\n\n\nend');
  });

  it('strips exactly one space after the colon, and takes a line without colon as a field name', () => {
    const { messages } = parse(['data:no space\n\ndata:  two spaces\n\nevent\ndata\n\n']);
    expect(messages.map((m) => [m.event, m.data])).toEqual([
      ['message', 'no space'],
      ['message', ' two spaces'],
      ['message', ''],
    ]);
  });

  it('ignores comments and unknown fields', () => {
    const { messages } = parse([':comment\n: another\nfoo: bar\ndata: x\n: mid-event\n\n']);
    expect(messages).toEqual([{ event: 'message', data: 'x', lastEventId: '' }]);
  });

  it('skips a BOM at the start of the stream, as text or bytes, and only there', () => {
    const text = '\uFEFFdata: x\n\n\uFEFFdata: y\n\n';
    for (const chunks of [[text], byteByByte(text), [bytes(text)]]) {
      const { messages } = parse(chunks);
      // The second BOM is not at the start: it belongs to the field name, which is then unknown.
      expect(messages).toEqual([{ event: 'message', data: 'x', lastEventId: '' }]);
    }
  });

  it('a BOM does not hide the first field: without it the first line would be lost', () => {
    expect(parse(['\uFEFFevent: ready\ndata: 1\n\n']).messages[0]?.event).toBe('ready');
    expect(
      parse([Uint8Array.of(0xef), Uint8Array.of(0xbb, 0xbf), bytes('data: 1\n\n')]).messages,
    ).toHaveLength(1);
  });

  it('ignores an id containing NUL; an empty id resets it; an id-only block updates it', () => {
    const { messages, parser } = parse([
      'id: 1\ndata: a\n\nid: 2\u0000x\ndata: b\n\nid\ndata: c\n\nid: 9\n\n',
    ]);
    expect(messages.map((m) => m.lastEventId)).toEqual(['1', '1', '']);
    expect(parser.lastEventId).toBe('9');
  });

  it('starts from the id it resumes from', () => {
    expect(parse(['event: ready\ndata: {}\n\n'], '7-0').messages[0]?.lastEventId).toBe('7-0');
  });

  it('accepts only all-digit retry values', () => {
    expect(parse(['retry: 250\nretry: 1a\nretry: -5\nretry:\nretry: 1.5\nretry:30\n\n']).retries).toEqual([
      250, 30,
    ]);
  });

  it('does not dispatch an event without data, and resets its type', () => {
    const { messages } = parse(['event: ready\n\ndata: x\n\n']);
    expect(messages).toEqual([{ event: 'message', data: 'x', lastEventId: '' }]);
  });

  it('discards an unterminated event at the end of the stream', () => {
    expect(parse(['data: complete\n\ndata: cut off\n']).messages.map((m) => m.data)).toEqual(['complete']);
    expect(parse(['data: complete\n\ndata: cut off']).messages).toHaveLength(1);
  });

  it('refuses a line or an event that outgrows the limit', () => {
    const parser = new SseParser({ onMessage: () => {} }, '', 16);
    expect(() => parser.push('data: 0123456789abcdef')).toThrow(SseLimitError);
    const multi = new SseParser({ onMessage: () => {} }, '', 16);
    expect(() => multi.push('data: 0123456789\ndata: 0123456789\n')).toThrow(SseLimitError);
  });
});
