import { describe, expect, it } from 'vitest';
import { generateRequestSchema } from '../../shared/protocol';
import { specificIssue } from '../../shared/specific-issue';
import { completionRequestSchema, parseOpenAiBody } from '../../edge/request-schema';
import { refusalOrNull } from '../support/refusal';

const generate = (sampling: Record<string, unknown>) => generateRequestSchema.safeParse({ id: 'x', promptIds: [1], maxTokens: 1, sampling: { temperature: 1, ...sampling } });

describe('the issue that says what is wrong', () => {
  it("gives a bad logit_bias key the key schema's own message, not zod's \"Invalid key in record\", at the pool and at the edge", () => {
    for (const key of ['05', '-1', 'abc']) {
      const issue = specificIssue(generate({ logitBias: { [key]: 1 } }).error!.issues[0])!;
      expect(issue.path.join('.')).toBe(`sampling.logitBias.${key}`);
      expect(issue.message).toMatch(/keys are token ids: whole numbers from 0, written without leading zeros/);
      const refused = refusalOrNull(() => parseOpenAiBody(completionRequestSchema, { model: 'm', prompt: 'a', logit_bias: { [key]: 1 } }));
      expect(refused!.toBody().error).toMatchObject({ param: `logit_bias.${key}`, message: `logit_bias.${key}: logit_bias keys are token ids: whole numbers from 0, written without leading zeros` });
    }
  });

  it('leaves an issue that names its reason as it is', () => {
    const issue = generate({ topK: 1.5 }).error!.issues[0];
    expect(specificIssue(issue)).toBe(issue);
  });
});
