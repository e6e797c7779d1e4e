import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeContinuation } from '../../../shared/tokenizer/encode-continuation';
import { loadTokenizer } from '../../../shared/tokenizer/load-tokenizer';
import { byteLevelTokenizer } from '../../support/byte-level-tokenizer';
import { models } from '../../support/shared-data';

const tok512 = loadTokenizer(new Uint8Array(readFileSync(models.stories260K.tokenizer)), 'llama2c');

describe('encodeContinuation', () => {
  it("gives a reply's tokens as they follow its prompt, without a dummy-prefix space of their own", () => {
    for (const [prompt, reply] of [
      ['Once upon a time', ', there was a little girl named Lily.'],
      ['Tom had a red ball', '. He liked to kick it.'],
      ['The cat', ' sat on the mat'],
    ]) {
      const whole = tok512.encode(prompt + reply, { bos: false });
      const head = tok512.encode(prompt, { bos: false });
      expect(encodeContinuation(tok512, reply), reply).toEqual(whole.slice(head.length));
      // Alone, the text gets a space token in front (the misalignment this avoids).
      expect(tok512.encode(reply, { bos: false }).length).toBe(whole.length - head.length + 1);
    }
    expect(encodeContinuation(tok512, '')).toEqual([]);
  });

  it('is the plain encoding for a vocabulary without a dummy prefix (byte-level)', () => {
    const byteLevel = byteLevelTokenizer();
    for (const text of [', there was', ' 中文', 'a\nb']) expect(encodeContinuation(byteLevel, text)).toEqual(byteLevel.encode(text, { bos: false }));
  });
});
