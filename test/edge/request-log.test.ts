/**
 * The request's log line: written once, when both its response and its
 * generations are over, with their figures and nothing of the text.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../../edge/api-error';
import { loggedErrorCode, RequestLog, type GenerationOutcome, type RequestLogLine } from '../../edge/request-log';

const HEX = '0123456789abcdef01234567';
const TENANT_HASH = 'ab'.repeat(32);

function outcome(over: Partial<GenerationOutcome> = {}): GenerationOutcome {
  return { finishReason: 'length', completionTokens: 16, poolsTried: 1, resumes: 0, cancelled: null, cachedTokens: 0, pool: 0, error: null, firstTokenAt: Date.now(), ...over };
}

function linesSaid(): { lines: () => RequestLogLine[] } {
  const info = vi.spyOn(console, 'info').mockImplementation(() => undefined);
  return { lines: () => info.mock.calls.map(([text]) => JSON.parse(String(text)) as RequestLogLine) };
}

afterEach(() => vi.restoreAllMocks());

describe('a request log line', () => {
  it('is written at the response for a route without generations, its id the header\'s and its tenant hash cut to 12 digits', () => {
    const said = linesSaid();
    const log = new RequestLog(HEX, 'GET');
    log.responded(404, '/v1/responses/:id', 'not_found', TENANT_HASH);
    expect(said.lines()).toEqual([
      { msg: 'request', id: `req-${HEX}`, method: 'GET', route: '/v1/responses/:id', status: 404, error: 'not_found', tenant: 'abababababab', ttfb_ms: expect.any(Number), ms: expect.any(Number) },
    ]);
  });

  it('waits for the generations of a completion, in whichever order they and the response end, and adds up their figures', () => {
    for (const responseFirst of [true, false]) {
      const said = linesSaid();
      const log = new RequestLog(HEX, 'POST');
      log.completion('stories260K', 2, true, 7, TENANT_HASH);
      const ended = [outcome({ finishReason: 'stop', completionTokens: 5 }), outcome({ completionTokens: 16, poolsTried: 2, resumes: 1 })];
      if (responseFirst) {
        log.responded(200, '/v1/completions', null, null);
        expect(said.lines()).toEqual([]);
        log.generationsEnded(ended);
      } else {
        log.generationsEnded(ended);
        expect(said.lines()).toEqual([]);
        log.responded(200, '/v1/completions', null, null);
      }
      const [line] = said.lines();
      expect(said.lines()).toHaveLength(1);
      expect(line).toMatchObject({ status: 200, model: 'stories260K', n: 2, stream: true, prompt_tokens: 7, completion_tokens: 21, finish_reasons: ['stop', 'length'], pools_tried: 3, resumes: 1, tenant: 'abababababab' });
      expect(line.error).toBeUndefined();
      expect(line.first_token_ms).toBeGreaterThanOrEqual(0);
      vi.restoreAllMocks();
    }
  });

  it('says a stream that failed after its 200, or a client that left, with no finish reason for that choice', () => {
    const said = linesSaid();
    const log = new RequestLog(HEX, 'POST');
    log.completion('m', 1, true, 3, TENANT_HASH);
    log.responded(200, '/v1/chat/completions', null, null);
    log.generationsEnded([outcome({ finishReason: null, error: 'pool_error', cancelled: 'client', firstTokenAt: 0 })]);
    const [line] = said.lines();
    expect(line).toMatchObject({ status: 200, error: 'pool_error', client_left: true, finish_reasons: [null] });
    expect(line.first_token_ms).toBeUndefined();
  });

  it('bills no tokens for a request answered with an error, and does not say its client left where its own failure stopped a choice (review h154)', () => {
    for (const responseFirst of [true, false]) {
      const said = linesSaid();
      const log = new RequestLog(HEX, 'POST');
      log.completion('m', 2, false, 9, TENANT_HASH);
      // One choice found every pool busy; its sibling, opened, was stopped with the request.
      const ended = [outcome({ finishReason: null, completionTokens: 0, error: 'pool_unavailable', pool: null, firstTokenAt: 0 }), outcome({ finishReason: null, completionTokens: 2, cancelled: 'request-failed', cachedTokens: 4 })];
      if (responseFirst) log.responded(503, '/v1/completions', 'pool_unavailable', null);
      log.generationsEnded(ended);
      if (!responseFirst) log.responded(503, '/v1/completions', 'pool_unavailable', null);
      const [line] = said.lines();
      expect(line).toMatchObject({ status: 503, error: 'pool_unavailable', n: 2, pools_tried: 2, served_by: [null, 0] });
      for (const field of ['prompt_tokens', 'cached_tokens', 'completion_tokens', 'client_left', 'stopped_by'] as const) expect(line[field], field).toBeUndefined();
      vi.restoreAllMocks();
    }
  });

  it("waits for a background response's stored end as well, and takes the error of one stored failed (review h223: a deadline's had none)", () => {
    for (const [stored, error] of [[null, undefined], ['server_error', 'server_error']] as const) {
      const said = linesSaid();
      const log = new RequestLog(HEX, 'POST');
      log.completion('m', 1, false, 5, TENANT_HASH);
      log.awaitsStoredEnd();
      log.responded(200, '/v1/responses', null, null);
      log.generationsEnded([outcome({ finishReason: null, completionTokens: 4, cancelled: stored === null ? null : 'deadline' })]);
      // Its generations ended: not written until its end is stored (an edge stopped meanwhile stores none).
      expect(said.lines()).toEqual([]);
      log.endStored(stored);
      const [line] = said.lines();
      expect(said.lines()).toHaveLength(1);
      expect(line).toMatchObject({ status: 200, completion_tokens: 4 });
      expect(line.error).toBe(error);
      expect(line.stopped_by).toBe(stored === null ? undefined : 'deadline');
      vi.restoreAllMocks();
    }
    // A generation's own error is the line's, before the stored end's.
    const said = linesSaid();
    const log = new RequestLog(HEX, 'POST');
    log.completion('m', 1, false, 5, TENANT_HASH);
    log.awaitsStoredEnd();
    log.generationsEnded([outcome({ finishReason: null, error: 'pool_error' })]);
    log.endStored('server_error');
    log.responded(200, '/v1/responses', null, null);
    expect(said.lines()).toMatchObject([{ error: 'pool_error' }]);
  });

  it("waits for the reply's body too, and says its client left where only the body's end found it gone (its generations ended on their own)", () => {
    for (const clientLeft of [true, false]) {
      const said = linesSaid();
      const log = new RequestLog(HEX, 'POST');
      log.completion('stories260K', 1, true, 7, TENANT_HASH);
      log.awaitsReplyEnd();
      log.responded(200, '/v1/chat/completions', null, null);
      log.generationsEnded([outcome()]);
      expect(said.lines()).toEqual([]);
      log.replyEnded(clientLeft);
      expect(said.lines()).toHaveLength(1);
      expect(said.lines()[0]).toMatchObject({ status: 200, finish_reasons: ['length'], completion_tokens: 16 });
      expect(said.lines()[0].client_left).toBe(clientLeft ? true : undefined);
      vi.restoreAllMocks();
    }
  });

  it('codes an API error by its code, else its type, and anything else as the 500 the router answers', () => {
    expect(loggedErrorCode(new ApiError(503, 'x', 'service_unavailable', 'pool_unavailable'))).toBe('pool_unavailable');
    expect(loggedErrorCode(new ApiError(400, 'x', 'invalid_request_error'))).toBe('invalid_request_error');
    expect(loggedErrorCode(new TypeError('boom'))).toBe('internal_error');
  });
});
