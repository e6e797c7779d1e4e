/**
 * A datastore named on the command line, held to the vocabulary and the tokenizer it will draft for, as the pool
 * holds its own: a store built with another tokenizer drafts ids that spell other text, and `eval-drafts`,
 * `bench-drafting` and `datastore bench` printed figures for one without a word (review h166).
 */
import { Datastore, type DatastoreLoadOptions } from '../datastore/datastore';
import { CliError } from './cli-error';

/** What the store must have been built for: the tokenizer file's SHA-256 and its vocabulary (the model's, where one runs). */
export interface DatastoreExpectations {
  vocabSize: number;
  tokenizerSha256: string;
  /** Whose vocabulary it is, for the refusal: "the model" (the default), or the tokenizer of a model-free command. */
  vocabOf?: string;
}

/** Datastore.load with the expectations checked; any failure one CliError, in the pool's words. */
export async function loadDatastoreFlag(
  file: string,
  expect: DatastoreExpectations,
  opts: Omit<DatastoreLoadOptions, 'expectVocabSize' | 'expectTokenizerSha256' | 'expectVocabOf'> = {},
): Promise<Datastore> {
  return Datastore.load(file, {
    ...opts,
    expectVocabSize: expect.vocabSize,
    expectTokenizerSha256: expect.tokenizerSha256,
    ...(expect.vocabOf !== undefined ? { expectVocabOf: expect.vocabOf } : {}),
  }).catch((err: Error) => {
    throw new CliError(`cannot load datastore ${file}: ${err.message}`);
  });
}
