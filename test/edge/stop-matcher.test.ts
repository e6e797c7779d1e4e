import { describe, expect, it } from 'vitest';
import { StopMatcher } from '../../edge/stop-matcher';

function feed(stops: string[], pieces: string[]): { sent: string; stopped: boolean } {
  const m = new StopMatcher(stops);
  let sent = '';
  for (const piece of pieces) {
    const { release, stopped } = m.push(piece);
    sent += release;
    if (stopped) return { sent, stopped: true };
  }
  return { sent: sent + m.flush(), stopped: false };
}

describe('StopMatcher', () => {
  it('stops on a string split across pieces and never sends any of it', () => {
    const m = new StopMatcher(['The end']);
    expect(m.push('and they lived. Th')).toEqual({ release: 'and they lived. ', stopped: false });
    expect(m.push('e e')).toEqual({ release: '', stopped: false });
    expect(m.push('nd!')).toEqual({ release: '', stopped: true });
  });

  it('releases held text once it can no longer start a stop string', () => {
    expect(feed(['\n\n'], ['a\n', 'b\n', 'c'])).toEqual({ sent: 'a\nb\nc', stopped: false });
    expect(feed(['ABC'], ['xA', 'B', 'x'])).toEqual({ sent: 'xABx', stopped: false });
  });

  it('picks the earliest of several stop strings', () => {
    expect(feed(['dog', 'cat'], ['the cat and the dog'])).toEqual({ sent: 'the ', stopped: true });
  });

  it('names the stop string it ended at (vLLM\'s stop_reason): the earliest, and of two at one place the first listed', () => {
    const m = new StopMatcher(['dog', 'cat', 'ca']);
    expect(m.matched).toBeNull();
    expect(m.push('the c').stopped).toBe(false);
    expect(m.matched).toBeNull();
    expect(m.push('at and the dog').stopped).toBe(true);
    expect(m.matched).toBe('cat');
  });

  it('sends the stop string with the text before it when asked (include_stop_str_in_output), and nothing after', () => {
    const m = new StopMatcher(['The end', 'end'], true);
    expect(m.push('and they lived. Th')).toEqual({ release: 'and they lived. ', stopped: false });
    expect(m.push('e end! More')).toEqual({ release: 'The end', stopped: true });
    expect(m.matched).toBe('The end');
  });

  it('flushes held text at the end of the stream', () => {
    expect(feed(['Lily went'], ['and Lily'])).toEqual({ sent: 'and Lily', stopped: false });
  });

  it("finds no stop string that ends in text pushed unsearched (vLLM's min_tokens), but holds its end, so one that starts there and ends after is found", () => {
    // Straddling: "The e" of the stop is in the unsearched text, "nd" after it.
    const m = new StopMatcher(['The end']);
    expect(m.push('and they lived. The e', false)).toEqual({ release: 'and they lived. ', stopped: false });
    expect(m.push('nd!')).toEqual({ release: '', stopped: true });
    expect(m.matched).toBe('The end');
    // Wholly inside the unsearched text: never a stop, even while its characters are still held for a longer one.
    const inside = new StopMatcher(['end', 'end of it']);
    expect(inside.push('The end', false)).toEqual({ release: 'The ', stopped: false });
    expect(inside.push('ing')).toEqual({ release: 'ending', stopped: false });
    expect(inside.matched).toBeNull();
    expect(inside.push(' end')).toEqual({ release: ' ', stopped: true });
    expect(inside.matched).toBe('end');
  });

  it('sends a stop string that starts in unsearched text with the text before it when asked (include_stop_str_in_output)', () => {
    // "they", inside the unsearched text, is no stop.
    const m = new StopMatcher(['The end', 'they'], true);
    expect(m.push('and they lived. The e', false)).toEqual({ release: 'and they lived. ', stopped: false });
    expect(m.push('nd! More')).toEqual({ release: 'The end', stopped: true });
    expect(m.matched).toBe('The end');
  });

  it('passes text through untouched without stop strings', () => {
    const m = new StopMatcher([]);
    expect(m.push('abc')).toEqual({ release: 'abc', stopped: false });
  });
});
