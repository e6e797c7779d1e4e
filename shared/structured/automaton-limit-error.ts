/**
 * A structured output's automaton grew past its state limit while a
 * request was decoding: the pool ends that one request with this error
 * rather than let one pattern take the process's memory.
 */
export class AutomatonLimitError extends Error {
  constructor(
    readonly limit: number,
    what: string,
  ) {
    super(`the ${what} automaton grew past its limit (${limit} states): the structured output is too complex to follow`);
    this.name = 'AutomatonLimitError';
  }
}
