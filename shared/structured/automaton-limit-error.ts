/**
 * A structured output's automaton grew past its state limit, or its
 * building past its work limit, while a request was decoding: the pool ends
 * that one request with this error rather than let one pattern take the
 * process's memory, or its one thread from every other stream.
 */
export class AutomatonLimitError extends Error {
  constructor(
    readonly limit: number,
    what: string,
    unit: 'states' | 'steps of building' | 'configurations in one step' = 'states',
  ) {
    super(`the ${what} automaton grew past its limit (${limit} ${unit}): the structured output is too complex to follow`);
    this.name = 'AutomatonLimitError';
  }
}
